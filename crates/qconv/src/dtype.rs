//! Integer element types of quantized tensors.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The integer type of a quantized tensor's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Uint8,
    Int8,
    Int32,
}

impl DType {
    /// The canonical name, as the golden cases and layer files spell it.
    pub fn name(self) -> &'static str {
        match self {
            DType::Uint8 => "uint8",
            DType::Int8 => "int8",
            DType::Int32 => "int32",
        }
    }

    /// Smallest representable value.
    pub fn min(self) -> i64 {
        match self {
            DType::Uint8 => 0,
            DType::Int8 => -128,
            DType::Int32 => i32::MIN as i64,
        }
    }

    /// Largest representable value.
    pub fn max(self) -> i64 {
        match self {
            DType::Uint8 => 255,
            DType::Int8 => 127,
            DType::Int32 => i32::MAX as i64,
        }
    }

    /// Whether `v` is representable.
    pub fn contains(self, v: i64) -> bool {
        (self.min()..=self.max()).contains(&v)
    }

    /// Clamps `v` into the type's range.
    pub fn saturate(self, v: i64) -> i32 {
        v.clamp(self.min(), self.max()) as i32
    }

    /// Checks that every element of `data` is representable; `field` names the data in errors.
    pub fn check_data(self, field: &str, data: &[i32]) -> Result<()> {
        match data.iter().position(|&v| !self.contains(v as i64)) {
            None => Ok(()),
            Some(i) => Err(Error::invalid(
                field,
                format!(
                    "element {i} is {}, outside {} [{}, {}]",
                    data[i],
                    self.name(),
                    self.min(),
                    self.max()
                ),
            )),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "uint8" | "quint8" | "u8" => Ok(DType::Uint8),
            "int8" | "qint8" | "i8" => Ok(DType::Int8),
            "int32" | "qint32" | "i32" => Ok(DType::Int32),
            _ => Err(Error::invalid(
                "dtype",
                format!("unknown dtype `{s}` (expected uint8, int8 or int32)"),
            )),
        }
    }
}

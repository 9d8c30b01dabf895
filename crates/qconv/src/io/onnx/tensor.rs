//! The values of a `TensorProto`: `raw_data` (little-endian) or the typed fields, checked
//! against the declared dims and type before anything is allocated.

use super::proto::{TensorProto, data_type};
use crate::error::{Error, Result};
use crate::geometry::MAX_ELEMENTS;

/// A decoded tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorValue {
    pub data_type: i32,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

/// Tensor elements, widened.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

impl TensorValue {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::Int(v) => v.len(),
            TensorData::Float(v) => v.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Element count of `dims`, refusing negative and absurd dims.
pub fn element_count(dims: &[i64], err: &dyn Fn(String) -> Error) -> Result<usize> {
    let mut count = 1usize;
    for &d in dims {
        if d < 0 {
            return Err(err(format!("dims {dims:?}: a dimension is negative")));
        }
        count = usize::try_from(d)
            .ok()
            .and_then(|d| count.checked_mul(d))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| {
                err(format!(
                    "dims {dims:?}: absurdly large (more than {MAX_ELEMENTS} elements)"
                ))
            })?;
    }
    Ok(count)
}

/// Decodes `t`. `err` builds an error naming the file and the tensor.
pub fn decode(t: &TensorProto, err: &dyn Fn(String) -> Error) -> Result<TensorValue> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        let location = t
            .external_data
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| format!(" (`{v}`)"))
            .unwrap_or_default();
        return Err(err(format!(
            "its data is stored in an external file{location}; qconv reads only tensors stored \
             inside the model"
        )));
    }
    if t.has_segment {
        return Err(err(
            "it is a segment of a larger tensor, which qconv does not read".into(),
        ));
    }
    let count = element_count(&t.dims, err)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let dt = t.data_type;
    let size = match dt {
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        data_type::UINT16 | data_type::INT16 => 2,
        data_type::INT32 | data_type::UINT32 | data_type::FLOAT => 4,
        data_type::INT64 | data_type::UINT64 | data_type::DOUBLE => 8,
        other => {
            return Err(err(format!(
                "data type {} is not supported (qconv reads integer, float and double tensors)",
                data_type::name(other)
            )));
        }
    };
    let mismatch = |found: usize| {
        err(format!(
            "holds {found} values but dims {:?} need {count}",
            t.dims
        ))
    };
    let data = if let Some(raw) = &t.raw_data {
        if raw.len() != count * size {
            return Err(err(format!(
                "raw_data has {} bytes but dims {:?} of {} need {}",
                raw.len(),
                t.dims,
                data_type::name(dt),
                count * size
            )));
        }
        let mut ints = Vec::new();
        let mut floats = Vec::new();
        for c in raw.chunks_exact(size) {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            match dt {
                data_type::UINT8 | data_type::BOOL => ints.push(i64::from(c[0])),
                data_type::INT8 => ints.push(i64::from(c[0] as i8)),
                data_type::UINT16 => ints.push(i64::from(u16::from_le_bytes([c[0], c[1]]))),
                data_type::INT16 => ints.push(i64::from(i16::from_le_bytes([c[0], c[1]]))),
                data_type::INT32 => {
                    ints.push(i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                }
                data_type::UINT32 => {
                    ints.push(i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                }
                data_type::INT64 => ints.push(i64::from_le_bytes(b)),
                data_type::UINT64 => {
                    let u = u64::from_le_bytes(b);
                    ints.push(i64::try_from(u).map_err(|_| {
                        err(format!("uint64 value {u} does not fit in 64-bit signed"))
                    })?)
                }
                data_type::FLOAT => {
                    floats.push(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                }
                _ => floats.push(f64::from_le_bytes(b)),
            }
        }
        if matches!(dt, data_type::FLOAT | data_type::DOUBLE) {
            TensorData::Float(floats)
        } else {
            TensorData::Int(ints)
        }
    } else {
        match dt {
            data_type::FLOAT => {
                if t.float_data.len() != count {
                    return Err(mismatch(t.float_data.len()));
                }
                TensorData::Float(t.float_data.iter().map(|&v| f64::from(v)).collect())
            }
            data_type::DOUBLE => {
                if t.double_data.len() != count {
                    return Err(mismatch(t.double_data.len()));
                }
                TensorData::Float(t.double_data.clone())
            }
            data_type::INT64 => {
                if t.int64_data.len() != count {
                    return Err(mismatch(t.int64_data.len()));
                }
                TensorData::Int(t.int64_data.clone())
            }
            data_type::UINT32 | data_type::UINT64 => {
                if t.uint64_data.len() != count {
                    return Err(mismatch(t.uint64_data.len()));
                }
                let max = if dt == data_type::UINT32 {
                    u64::from(u32::MAX)
                } else {
                    i64::MAX as u64
                };
                TensorData::Int(
                    t.uint64_data
                        .iter()
                        .map(|&u| {
                            if u <= max {
                                Ok(u as i64)
                            } else {
                                Err(err(format!("value {u} is outside {}", data_type::name(dt))))
                            }
                        })
                        .collect::<Result<_>>()?,
                )
            }
            _ => {
                // int32_data holds every narrower integer type, one value per element.
                if t.int32_data.len() != count {
                    return Err(mismatch(t.int32_data.len()));
                }
                let (lo, hi) = match dt {
                    data_type::UINT8 => (0, 255),
                    data_type::INT8 => (-128, 127),
                    data_type::BOOL => (0, 1),
                    data_type::UINT16 => (0, 65535),
                    data_type::INT16 => (-32768, 32767),
                    _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
                };
                TensorData::Int(
                    t.int32_data
                        .iter()
                        .map(|&v| {
                            let v = i64::from(v);
                            if (lo..=hi).contains(&v) {
                                Ok(v)
                            } else {
                                Err(err(format!(
                                    "value {v} in int32_data is outside {}",
                                    data_type::name(dt)
                                )))
                            }
                        })
                        .collect::<Result<_>>()?,
                )
            }
        }
    };
    Ok(TensorValue {
        data_type: dt,
        dims,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(m: String) -> Error {
        Error::parse("t.onnx", "tensor", m)
    }

    #[test]
    fn raw_and_typed_data() {
        let t = TensorProto {
            dims: vec![2],
            data_type: data_type::INT8,
            raw_data: Some(vec![0xff, 0x7f]),
            ..Default::default()
        };
        assert_eq!(
            decode(&t, &err).unwrap().data,
            TensorData::Int(vec![-1, 127])
        );
        let t = TensorProto {
            dims: vec![],
            data_type: data_type::FLOAT,
            float_data: vec![0.25],
            ..Default::default()
        };
        let v = decode(&t, &err).unwrap();
        assert_eq!((v.dims.len(), v.data), (0, TensorData::Float(vec![0.25])));
        let t = TensorProto {
            dims: vec![1],
            data_type: data_type::UINT8,
            int32_data: vec![256],
            ..Default::default()
        };
        assert!(
            decode(&t, &err)
                .unwrap_err()
                .to_string()
                .contains("outside uint8")
        );
    }

    #[test]
    fn refusals() {
        let base = TensorProto {
            dims: vec![4],
            data_type: data_type::INT32,
            ..Default::default()
        };
        let cases = [
            (
                TensorProto {
                    raw_data: Some(vec![0; 15]),
                    ..base.clone()
                },
                "raw_data has 15 bytes",
            ),
            (
                TensorProto {
                    int32_data: vec![1, 2],
                    ..base.clone()
                },
                "holds 2 values",
            ),
            (
                TensorProto {
                    data_location: 1,
                    ..base.clone()
                },
                "external file",
            ),
            (
                TensorProto {
                    dims: vec![1 << 40, 1 << 40],
                    ..base.clone()
                },
                "absurdly large",
            ),
            (
                TensorProto {
                    dims: vec![-3],
                    ..base.clone()
                },
                "negative",
            ),
            (
                TensorProto {
                    data_type: data_type::STRING,
                    ..base.clone()
                },
                "not supported",
            ),
            (
                TensorProto {
                    has_segment: true,
                    ..base.clone()
                },
                "segment",
            ),
        ];
        for (t, needle) in cases {
            let e = decode(&t, &err).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
    }
}

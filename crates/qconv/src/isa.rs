//! Instruction sets that change an engine's integers.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The x86 instruction set an engine model reproduces. Engines pick kernels by the CPU they run
/// on, and on x86 that choice changes results: without VNNI, u8 x s8 kernels add pairs of products
/// in saturating int16 (`vpmaddubsw`); with AVX-512-VNNI, `vpdpbusd` accumulates exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Isa {
    /// AVX2 without VNNI.
    Avx2,
    /// AVX2 with AVX-VNNI and without AVX-512 (Intel Alder Lake and later client CPUs). FBGEMM
    /// does not use AVX-VNNI; ONNX Runtime does.
    AvxVnni,
    /// AVX-512 (F, BW, DQ, VL) without VNNI.
    Avx512,
    /// AVX-512 with VNNI (Cascade Lake and later Intel, AMD Zen 4 and later).
    Avx512Vnni,
}

impl Isa {
    /// Every modelled ISA, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Avx512Vnni];

    /// The canonical name (`avx2`, `avx512`, `avx512-vnni`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Whether the CPU has AVX-512-VNNI (`vpdpbusd` on 512-bit registers).
    pub fn has_avx512_vnni(self) -> bool {
        self == Isa::Avx512Vnni
    }

    /// Whether the CPU has AVX-512 (F, BW, DQ, VL).
    pub fn has_avx512(self) -> bool {
        matches!(self, Isa::Avx512 | Isa::Avx512Vnni)
    }

    /// Whether the CPU has any VNNI (AVX-VNNI or AVX-512-VNNI).
    pub fn has_vnni(self) -> bool {
        matches!(self, Isa::AvxVnni | Isa::Avx512Vnni)
    }

    /// The ISA FBGEMM would select on this machine. On CPUs other than x86-64, or x86 CPUs
    /// without AVX2 (where FBGEMM does not run at all), this is `Avx2`, the most common target.
    pub fn host() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl");
            if avx512 && std::arch::is_x86_feature_detected!("avx512vnni") {
                return Isa::Avx512Vnni;
            }
            if avx512 {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avxvnni") {
                return Isa::AvxVnni;
            }
        }
        Isa::Avx2
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        match lower.as_str() {
            "avx2" => Ok(Isa::Avx2),
            "avx-vnni" | "avxvnni" | "avx2-vnni" => Ok(Isa::AvxVnni),
            "avx512" => Ok(Isa::Avx512),
            "avx512-vnni" | "avx512vnni" => Ok(Isa::Avx512Vnni),
            _ => Err(Error::invalid(
                "isa",
                format!("unknown ISA `{s}` (expected avx2, avx-vnni, avx512 or avx512-vnni)"),
            )),
        }
    }
}

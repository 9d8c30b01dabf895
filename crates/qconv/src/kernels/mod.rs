//! Compute kernels: the innermost loops of the fast convolution, one implementation per
//! instruction set, chosen at run time.
//!
//! Every kernel computes the same integers as the scalar one; `unsafe` lives only in `x86`, behind
//! safe functions that require a [`KernelIsa`] proving the CPU has the instructions. The kernel
//! set is chosen once per convolution plan: the best the CPU has, unless forced with the
//! `QCONV_KERNEL` environment variable (`scalar`, `avx2`, `avx-vnni`, `avx512-vnni`) or by
//! passing a [`KernelIsa`] explicitly, so tests cover every path the CPU supports.

pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use std::fmt;

use crate::error::{Error, Result};

/// The planar kernels compute outputs in blocks of this many values.
pub const PLANAR_BLOCK: usize = 64;

/// How the planar kernels sum a channel's taps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanarSum {
    /// Every product added ([`scalar::planar_f32`]).
    Plain,
    /// Taps two at a time, each pair clamped to int16 ([`scalar::planar_pairs_f32`]).
    SaturatingPairs,
}

/// Planar convolution of one channel with `isa`'s kernel (see [`scalar::planar_f32`] for what
/// it computes and when it is exact, [`scalar::planar_pairs_f32`] for the pairs).
/// `out.len()` must be a multiple of [`PLANAR_BLOCK`].
pub fn planar_f32(
    isa: KernelIsa,
    sum: PlanarSum,
    src: &[f32],
    offsets: &[usize],
    weights: &[f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.has_avx2() {
            return x86::planar_f32(isa, sum, src, offsets, weights, out);
        }
    }
    let _ = isa;
    match sum {
        PlanarSum::Plain => scalar::planar_f32(src, offsets, weights, out),
        PlanarSum::SaturatingPairs => scalar::planar_pairs_f32(src, offsets, weights, out),
    }
}

/// The float32 requantization estimate (see [`scalar::requantize_f32`]) with `isa`'s kernel.
#[inline(always)]
pub fn requantize_f32<A: scalar::EstimateInput, T: scalar::EstimateOutput>(
    isa: KernelIsa,
    accs: &[A],
    acc_offset: i32,
    e: &scalar::F32Estimate,
    out: &mut [T],
    unsure: &mut [u64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.has_avx2() {
            return x86::requantize_f32(isa, accs, acc_offset, e, out, unsure);
        }
    }
    let _ = isa;
    scalar::requantize_f32(accs, acc_offset, e, out, unsure)
}

/// The float32 requantization of the x86 engine models (see [`scalar::Fp32Run`]) with `isa`'s
/// kernel. `out` must be as long as `accs`.
#[inline(always)]
pub fn requantize_fp32(isa: KernelIsa, p: &scalar::Fp32Run, accs: &[i32], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.has_avx2() {
            return x86::requantize_fp32(isa, p, accs, out);
        }
    }
    let _ = isa;
    assert_eq!(accs.len(), out.len(), "one output per accumulator");
    scalar::requantize_fp32(p, accs, out)
}

/// The register tile `(mr, nr)` of the u8 x s8 pair GEMMs of `kernel`.
pub fn pairs_tile(kernel: KernelIsa) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if kernel.has_avx2() {
            return x86::AVX2_TILE;
        }
    }
    let _ = kernel;
    (4, 8)
}

/// u8 x s8 pair GEMM on packed panels (see [`scalar::gemm_u8s8_pairs`]) with `kernel`'s tile
/// ([`pairs_tile`]).
pub fn gemm_u8s8_pairs(
    kernel: KernelIsa,
    (mr, nr, kq): (usize, usize, usize),
    a: &[u8],
    b: &[i8],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if kernel.has_avx2() {
            return x86::gemm_u8s8_pairs(kernel, kq, a, b, c);
        }
    }
    let _ = kernel;
    scalar::gemm_u8s8_pairs(mr, nr, kq, a, b, c)
}

/// u8 x s8 pair GEMM reading rows through pixel offsets (see [`scalar::igemm_u8s8_pairs`]).
pub fn igemm_u8s8_pairs(
    kernel: KernelIsa,
    (mr, nr, taps, quads): (usize, usize, usize, usize),
    a: &[u8],
    offsets: &[usize],
    b: &[i8],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if kernel.has_avx2() {
            return x86::igemm_u8s8_pairs(kernel, taps, quads, a, offsets, b, c);
        }
    }
    let _ = kernel;
    scalar::igemm_u8s8_pairs(mr, nr, taps, quads, a, offsets, b, c)
}

/// What a direct kernel computes (see `fastconv/direct.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectKind {
    /// Exact u8 x s8 on channel quads.
    U8S8,
    /// u8 x s8 on channel quads, each pair of products summed in saturating int16.
    U8S8Pairs,
    /// Exact i16 x i16 on channel pairs.
    I16,
}

impl DirectKind {
    /// Channels interleaved per pixel in the input layout.
    pub fn width(self) -> usize {
        match self {
            DirectKind::I16 => 2,
            _ => 4,
        }
    }
}

/// The kernel `kind` runs on `isa`: the tile `(mr output channels, tw pixels)`. Scalar kernels
/// cover every kind.
pub fn direct_tile(isa: KernelIsa, kind: DirectKind) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(tile) = x86::direct_tile(isa, kind) {
            return tile;
        }
    }
    let _ = (isa, kind);
    SCALAR_DIRECT_TILE
}

/// The scalar direct kernels' tile.
const SCALAR_DIRECT_TILE: (usize, usize) = (4, 16);

/// The reduction steps of a direct kernel: where each step's run starts in the activation
/// copy. The largest start is kept so that the kernels' safe wrappers check their reads in
/// constant time on every tile.
#[derive(Clone, Debug, Default)]
pub struct DirectSteps {
    offsets: Vec<usize>,
    max: usize,
}

impl DirectSteps {
    /// Steps starting at `offsets`, in reduction order.
    pub fn new(offsets: Vec<usize>) -> DirectSteps {
        let max = offsets.iter().copied().max().unwrap_or(0);
        DirectSteps { offsets, max }
    }

    /// The starts, in reduction order.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The largest start (0 without steps).
    pub fn max(&self) -> usize {
        self.max
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// Direct u8 x s8 tile (see [`scalar::direct_u8s8`]) with the tile of [`direct_tile`], row `m`
/// stored at `acc[m * ldc ..]`. Only the first `pixels` columns are needed: kernels may skip
/// whole vectors past them (the rest of the tile is then left as it was).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn direct_u8s8(
    isa: KernelIsa,
    pairs: bool,
    pixels: usize,
    steps: &DirectSteps,
    b: &[u8],
    w: &[i8],
    acc: &mut [i32],
    ldc: usize,
) {
    let kind = if pairs {
        DirectKind::U8S8Pairs
    } else {
        DirectKind::U8S8
    };
    #[cfg(target_arch = "x86_64")]
    {
        if x86::direct_tile(isa, kind).is_some() {
            return x86::direct_u8s8(isa, pairs, pixels, steps, b, w, acc, ldc);
        }
    }
    let _ = (kind, pixels);
    let (mr, tw) = SCALAR_DIRECT_TILE;
    scalar::direct_u8s8(mr, tw, pairs, steps.offsets(), b, w, acc, ldc)
}

/// Direct i16 tile (see [`scalar::direct_i16`]) with the tile of [`direct_tile`].
#[inline(always)]
pub fn direct_i16(
    isa: KernelIsa,
    steps: &DirectSteps,
    b: &[i16],
    w: &[i16],
    acc: &mut [i32],
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86::direct_tile(isa, DirectKind::I16).is_some() {
            return x86::direct_i16(isa, steps, b, w, acc, ldc);
        }
    }
    let (mr, tw) = SCALAR_DIRECT_TILE;
    scalar::direct_i16(mr, tw, steps.offsets(), b, w, acc, ldc)
}

/// Four byte rows interleaved into `out` (see [`scalar::interleave`]).
#[inline(always)]
pub fn interleave_u8x4(isa: KernelIsa, rows: [&[u8]; 4], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.has_avx2() {
            return x86::interleave_u8x4(isa, rows, out);
        }
    }
    let _ = isa;
    scalar::interleave(rows, out)
}

/// Two i16 rows interleaved into `out` (see [`scalar::interleave`]).
#[inline(always)]
pub fn interleave_i16x2(isa: KernelIsa, rows: [&[i16]; 2], out: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.has_avx2() {
            return x86::interleave_i16x2(isa, rows, out);
        }
    }
    let _ = isa;
    scalar::interleave(rows, out)
}

/// An instruction set a kernel is written for. Values other than `Scalar` can only be obtained
/// from [`KernelIsa::detect`] / [`KernelIsa::available`], which check the CPU: holding one is the
/// proof the kernels' `unsafe` code relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelIsa(Level);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Level {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512Vnni,
}

impl KernelIsa {
    /// The portable kernels, always available.
    pub const SCALAR: KernelIsa = KernelIsa(Level::Scalar);

    /// Every kernel set this CPU can run, slowest first.
    pub fn available() -> Vec<KernelIsa> {
        let mut out = vec![KernelIsa::SCALAR];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            if avx2 {
                out.push(KernelIsa(Level::Avx2));
            }
            if avx2 && has!("avxvnni") {
                out.push(KernelIsa(Level::AvxVnni));
            }
            let avx512 =
                has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
            if avx2 && avx512 && has!("avx512vnni") {
                out.push(KernelIsa(Level::Avx512Vnni));
            }
        }
        out
    }

    /// The kernel set to use: `QCONV_KERNEL` if set (an error if this CPU lacks it), else the
    /// fastest available.
    pub fn detect() -> Result<KernelIsa> {
        match std::env::var("QCONV_KERNEL") {
            Ok(name) if !name.is_empty() => KernelIsa::by_name(&name),
            _ => Ok(*KernelIsa::available()
                .last()
                .expect("scalar is always available")),
        }
    }

    /// The kernel set called `name`, if this CPU can run it.
    pub fn by_name(name: &str) -> Result<KernelIsa> {
        let wanted = match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "scalar" => Level::Scalar,
            "avx2" => Level::Avx2,
            "avx-vnni" | "avxvnni" => Level::AvxVnni,
            "avx512-vnni" | "avx512vnni" => Level::Avx512Vnni,
            _ => {
                return Err(Error::invalid(
                    "kernel",
                    format!(
                        "unknown kernel set `{name}` (expected scalar, avx2, avx-vnni or avx512-vnni)"
                    ),
                ));
            }
        };
        KernelIsa::available()
            .into_iter()
            .find(|k| k.0 == wanted)
            .ok_or_else(|| {
                Error::invalid("kernel", format!("this CPU cannot run the {name} kernels"))
            })
    }

    /// The kernel set's name.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avx-vnni",
            Level::Avx512Vnni => "avx512-vnni",
        }
    }

    pub(crate) fn is_avx_vnni(self) -> bool {
        self.0 == Level::AvxVnni
    }

    pub(crate) fn is_avx512_vnni(self) -> bool {
        self.0 == Level::Avx512Vnni
    }

    /// Whether the AVX2 instructions are usable (every x86 kernel set has them).
    pub(crate) fn has_avx2(self) -> bool {
        self.0 != Level::Scalar
    }
}

/// Work to run compiled for a kernel set's vector extensions (see [`with_isa`]).
pub trait VectorTask {
    type Output;
    /// Runs the task. Implementations should be `#[inline(always)]`, as should what they call
    /// on their hot path, so that it is compiled inside the feature-enabled function.
    fn run(self) -> Self::Output;
}

/// Runs `task` compiled for `isa`'s vector extensions; the scalar set runs it as it is.
#[inline(always)]
pub fn with_isa<T: VectorTask>(isa: KernelIsa, task: T) -> T::Output {
    #[cfg(target_arch = "x86_64")]
    {
        x86::with_isa(isa, task)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        task.run()
    }
}

impl fmt::Display for KernelIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

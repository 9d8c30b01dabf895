//! Portable kernels. They define what every SIMD kernel must compute, and run where no SIMD
//! kernel applies.
//!
//! Packed layouts of the pair GEMMs (shared with the x86 kernels): u8 x s8 panels in quads, A is
//! `[kq][mr][4]` (4 consecutive reduction steps of each row), B is `[kq][nr][4]`; C is `[mr][nr]`
//! row-major. The direct, planar and requantization kernels document their own layouts.

use crate::numerics::{cvtps2dq, sat16};

/// `C[m][n] = sum_k A[m][k] * B[k][n]` on quad-packed u8 x s8 panels, each pair of products
/// (reduction steps `2p`, `2p + 1`) summed in saturating int16 first, as `vpmaddubsw` does, then
/// in wrapping int32.
pub fn gemm_u8s8_pairs(mr: usize, nr: usize, kq: usize, a: &[u8], b: &[i8], c: &mut [i32]) {
    debug_assert!(a.len() >= kq * mr * 4 && b.len() >= kq * nr * 4 && c.len() >= mr * nr);
    c[..mr * nr].fill(0);
    for q in 0..kq {
        let aq = &a[q * mr * 4..(q + 1) * mr * 4];
        let bq = &b[q * nr * 4..(q + 1) * nr * 4];
        for m in 0..mr {
            let am = &aq[m * 4..m * 4 + 4];
            for n in 0..nr {
                let bn = &bq[n * 4..n * 4 + 4];
                let lo = sat16(am[0] as i32 * bn[0] as i32 + am[1] as i32 * bn[1] as i32);
                let hi = sat16(am[2] as i32 * bn[2] as i32 + am[3] as i32 * bn[3] as i32);
                c[m * nr + n] = c[m * nr + n].wrapping_add(lo + hi);
            }
        }
    }
}

/// Indirect u8 x s8 tile product with int16 pair saturation: row `m` of A is the concatenation
/// over taps `t` of `a[offsets[t * mr + m] ..][.. quads * 4]`; B is quad-packed
/// `[taps * quads][nr][4]`.
#[allow(clippy::too_many_arguments)]
pub fn igemm_u8s8_pairs(
    mr: usize,
    nr: usize,
    taps: usize,
    quads: usize,
    a: &[u8],
    offsets: &[usize],
    b: &[i8],
    c: &mut [i32],
) {
    c[..mr * nr].fill(0);
    for t in 0..taps {
        for q in 0..quads {
            let bq = &b[(t * quads + q) * nr * 4..][..nr * 4];
            for m in 0..mr {
                let at = offsets[t * mr + m] + q * 4;
                let am = &a[at..at + 4];
                for n in 0..nr {
                    let bn = &bq[n * 4..n * 4 + 4];
                    let p = |i: usize| am[i] as i32 * bn[i] as i32;
                    let dot = sat16(p(0) + p(1)) + sat16(p(2) + p(3));
                    c[m * nr + n] = c[m * nr + n].wrapping_add(dot);
                }
            }
        }
    }
}

/// Planar convolution of one channel, in float32:
/// `out[j] = sum_t weights[t] * src[offsets[t] + j]` for `j < out.len()`, taps in order.
///
/// The values are small integers (activations and weights with their zero points subtracted);
/// while every partial sum stays below 2^24 in magnitude each step is exact, so the result is
/// the exact integer sum whatever the order or fusion of the steps, which is what lets the SIMD
/// kernels use fused multiply-adds. Panics if a tap reads outside `src`.
pub fn planar_f32(src: &[f32], offsets: &[usize], weights: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (&offset, &w) in offsets.iter().zip(weights) {
        let from = &src[offset..offset + out.len()];
        for (o, &x) in out.iter_mut().zip(from) {
            *o += w * x;
        }
    }
}

/// Planar convolution of one channel with the taps summed two at a time in saturating int16:
/// `out[j] = sum_p sat16(weights[2p] * src[offsets[2p] + j] + weights[2p + 1] * src[offsets[2p + 1] + j])`
/// (a last odd tap alone), in float32. The values are raw u8 activations and s8 weights, so
/// every product, pair sum and clamped pair is an integer float32 holds exactly, and the total
/// is exact while it stays below 2^24. What `vpmaddubsw` computes for a depthwise channel whose
/// taps are paired in order (FBGEMM's depthwise kernel). Panics if a tap reads outside `src`.
pub fn planar_pairs_f32(src: &[f32], offsets: &[usize], weights: &[f32], out: &mut [f32]) {
    const LO: f32 = i16::MIN as f32;
    const HI: f32 = i16::MAX as f32;
    let n = out.len();
    out.fill(0.0);
    for (o, w) in offsets.chunks(2).zip(weights.chunks(2)) {
        let a = &src[o[0]..o[0] + n];
        match (o, w) {
            ([_, ob], [wa, wb]) => {
                let b = &src[*ob..*ob + n];
                for ((acc, &xa), &xb) in out.iter_mut().zip(a).zip(b) {
                    *acc += (wa * xa + wb * xb).clamp(LO, HI);
                }
            }
            _ => {
                for (acc, &xa) in out.iter_mut().zip(a) {
                    *acc += (w[0] * xa).clamp(LO, HI);
                }
            }
        }
    }
}

/// Accumulators the float32 estimate takes: float32 integers (exact, below 2^24) or int32
/// (rounded to float32, which the estimate's error allowance covers).
pub trait EstimateInput: Copy {
    /// Whether the type is `f32` (else `i32`).
    const IS_F32: bool;
    fn to_f32(self) -> f32;
    /// The exact integer.
    fn to_i64(self) -> i64;
    /// The value plus `offset` (int32 accumulators, wrapping; float ones ignore it), as f32.
    #[inline(always)]
    fn offset_f32(self, offset: i32) -> f32 {
        if Self::IS_F32 {
            self.to_f32()
        } else {
            (self.to_i64() as i32).wrapping_add(offset) as f32
        }
    }
}

impl EstimateInput for f32 {
    const IS_F32: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl EstimateInput for i32 {
    const IS_F32: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// Output element types of the requantization kernels.
pub trait EstimateOutput: Copy {
    /// The value of an integer already inside the type's range.
    fn from_i32(v: i32) -> Self;
}

impl EstimateOutput for u8 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as u8
    }
}

impl EstimateOutput for i8 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

impl EstimateOutput for i32 {
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v
    }
}

/// A channel's constants for [`requantize_f32`]: the float32 estimate of exact requantization
/// (see `ExactRequantizer::requantize_run_f32` for the error analysis).
#[derive(Clone, Copy, Debug)]
pub struct F32Estimate {
    pub int_bias: f32,
    pub scale: f32,
    pub offset: f32,
    /// Elements nearer than `0.5 - threshold` to a rounding tie are unsure.
    pub threshold: f32,
    /// Output range relative to the zero point, within +-2^16.
    pub lo: i32,
    pub hi: i32,
    pub zero_point: i32,
}

/// For each accumulator `a` (float32 integers, or int32 plus `acc_offset` with wrapping):
/// `v = clamp((a + int_bias) * scale + offset, lo, hi)`, rounded to nearest through
/// `+ 1.5 * 2^23`, plus the zero point. Elements too near a tie for the estimate are flagged in
/// `unsure` (bit `i % 64` of word `i / 64`; it must hold `ceil(n / 64)` words), and the caller
/// recomputes them exactly. SIMD kernels compute the same float32 operations in the same order,
/// so they agree bit for bit.
pub fn requantize_f32<A: EstimateInput, T: EstimateOutput>(
    accs: &[A],
    acc_offset: i32,
    e: &F32Estimate,
    out: &mut [T],
    unsure: &mut [u64],
) {
    const MAGIC: f32 = 12_582_912.0;
    let n = accs.len().min(out.len());
    let (vlo, vhi) = (e.lo as f32, e.hi as f32);
    let bias = (MAGIC.to_bits() as i32).wrapping_sub(e.zero_point);
    unsure[..n.div_ceil(64)].fill(0);
    for (i, (&a, o)) in accs[..n].iter().zip(out.iter_mut()).enumerate() {
        let p = (a.offset_f32(acc_offset) + e.int_bias) * e.scale;
        let v = (p + e.offset).max(vlo).min(vhi);
        let t = v + MAGIC;
        let r = t - MAGIC;
        if (v - r).abs() >= e.threshold {
            unsure[i / 64] |= 1 << (i % 64);
        }
        *o = T::from_i32((t.to_bits() as i32).wrapping_sub(bias));
    }
}

/// Direct tile (see `kernels::direct_u8s8`): `acc[m * ldc + j] = sum over steps s, i < 4 of
/// w[(s * mr + m) * 4 + i] * b[steps[s] + 4 j + i]`, in wrapping int32; with `pairs`, each pair
/// of products (`i = 0, 1` and `i = 2, 3`) is first summed in saturating int16.
#[allow(clippy::too_many_arguments)]
pub fn direct_u8s8(
    mr: usize,
    tw: usize,
    pairs: bool,
    steps: &[usize],
    b: &[u8],
    w: &[i8],
    acc: &mut [i32],
    ldc: usize,
) {
    for m in 0..mr {
        acc[m * ldc..m * ldc + tw].fill(0);
    }
    for (s, &offset) in steps.iter().enumerate() {
        let bs = &b[offset..offset + 4 * tw];
        for m in 0..mr {
            let wq = &w[(s * mr + m) * 4..(s * mr + m) * 4 + 4];
            let row = &mut acc[m * ldc..m * ldc + tw];
            for (a, x) in row.iter_mut().zip(bs.chunks_exact(4)) {
                let p: [i32; 4] = std::array::from_fn(|i| x[i] as i32 * wq[i] as i32);
                let sum = if pairs {
                    sat16(p[0] + p[1]) + sat16(p[2] + p[3])
                } else {
                    p[0] + p[1] + p[2] + p[3]
                };
                *a = a.wrapping_add(sum);
            }
        }
    }
}

/// Direct tile on i16 pairs: `acc[m * ldc + j] = sum over steps s, i < 2 of
/// w[(s * mr + m) * 2 + i] * b[steps[s] + 2 j + i]`, in wrapping int32.
pub fn direct_i16(
    mr: usize,
    tw: usize,
    steps: &[usize],
    b: &[i16],
    w: &[i16],
    acc: &mut [i32],
    ldc: usize,
) {
    for m in 0..mr {
        acc[m * ldc..m * ldc + tw].fill(0);
    }
    for (s, &offset) in steps.iter().enumerate() {
        let bs = &b[offset..offset + 2 * tw];
        for m in 0..mr {
            let wp = &w[(s * mr + m) * 2..(s * mr + m) * 2 + 2];
            let row = &mut acc[m * ldc..m * ldc + tw];
            for (a, x) in row.iter_mut().zip(bs.chunks_exact(2)) {
                let sum = x[0] as i32 * wp[0] as i32 + x[1] as i32 * wp[1] as i32;
                *a = a.wrapping_add(sum);
            }
        }
    }
}

/// `out[W j + i] = rows[i][j]`: rows interleaved element by element.
pub fn interleave<T: Copy, const W: usize>(rows: [&[T]; W], out: &mut [T]) {
    let n = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    for (j, group) in out.chunks_exact_mut(W).take(n).enumerate() {
        for (i, slot) in group.iter_mut().enumerate() {
            *slot = rows[i][j];
        }
    }
}

/// One output channel's float32 requantization as the x86 engines compute it (the schemes of
/// `requant::fp32`, in the same operations and order): the accumulator plus `int_add` (wrapping),
/// converted to float32, plus a float bias term `fma(bias, reciprocal, x)` (one rounding),
/// times `multiplier`, then stored.
///
/// `reciprocal = 1` adds a bias already in accumulator units (`x + bias`, the same rounding);
/// `bias = 0` adds nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fp32Run {
    pub int_add: i32,
    pub bias: f32,
    pub reciprocal: f32,
    pub multiplier: f32,
    pub zero_point: i32,
    /// `true`: FBGEMM / QNNPACK's store (`cvtps2dq`, int16 saturation, the zero point added
    /// in saturating int16, saturation to `dtype_range`, clamp to `range`). `false`: MLAS /
    /// XNNPACK's (clamp the float to `range - zero_point`, `cvtps2dq`, add the zero point).
    pub pack_chain: bool,
    /// The output type's range.
    pub dtype_range: (i32, i32),
    /// The output range after any fused activation (inside `dtype_range`).
    pub range: (i32, i32),
}

impl Fp32Run {
    /// The float that is stored.
    #[inline(always)]
    pub fn scaled(&self, acc: i32) -> f32 {
        let x = acc.wrapping_add(self.int_add) as f32;
        self.bias.mul_add(self.reciprocal, x) * self.multiplier
    }

    /// The output integer of the scaled float `s`.
    #[inline(always)]
    pub fn store(&self, s: f32) -> i32 {
        let (lo, hi) = self.range;
        if self.pack_chain {
            let v = sat16(sat16(cvtps2dq(s)) + self.zero_point);
            v.clamp(self.dtype_range.0, self.dtype_range.1)
                .clamp(lo, hi)
        } else {
            let (flo, fhi) = ((lo - self.zero_point) as f32, (hi - self.zero_point) as f32);
            // maxps / minps: a NaN takes the bound.
            let c = if s > flo { s } else { flo };
            let c = if c < fhi { c } else { fhi };
            cvtps2dq(c) + self.zero_point
        }
    }
}

/// [`Fp32Run`] over a run of accumulators: `out[i] = store(scaled(accs[i]))`.
pub fn requantize_fp32(p: &Fp32Run, accs: &[i32], out: &mut [i32]) {
    for (&a, o) in accs.iter().zip(out.iter_mut()) {
        *o = p.store(p.scaled(a));
    }
}

//! Portable kernels. They define what every SIMD kernel must compute, and run where no SIMD
//! kernel applies.
//!
//! Packed layouts (shared with the x86 kernels):
//! - u8 x s8 panels in quads: A is `[kq][mr][4]` (4 consecutive reduction steps of each row),
//!   B is `[kq][nr][4]`; C is `[mr][nr]` row-major.
//! - i16 x i16 panels in pairs: A is `[kp][mr][2]`, B is `[kp][nr][2]`.

use crate::numerics::sat16;

/// `C[m][n] = sum_k A[m][k] * B[k][n]`, exact (int32 wrap-around) on quad-packed u8 x s8 panels.
pub fn gemm_u8s8(mr: usize, nr: usize, kq: usize, a: &[u8], b: &[i8], c: &mut [i32]) {
    debug_assert!(a.len() >= kq * mr * 4 && b.len() >= kq * nr * 4 && c.len() >= mr * nr);
    c[..mr * nr].fill(0);
    for q in 0..kq {
        let aq = &a[q * mr * 4..(q + 1) * mr * 4];
        let bq = &b[q * nr * 4..(q + 1) * nr * 4];
        for m in 0..mr {
            let am = &aq[m * 4..m * 4 + 4];
            for n in 0..nr {
                let bn = &bq[n * 4..n * 4 + 4];
                let dot: i32 = (0..4).map(|i| am[i] as i32 * bn[i] as i32).sum();
                c[m * nr + n] = c[m * nr + n].wrapping_add(dot);
            }
        }
    }
}

/// Like [`gemm_u8s8`], but each pair of products (reduction steps `2p`, `2p + 1`) is summed in
/// saturating int16 first, as `vpmaddubsw` does.
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

/// Indirect u8 x s8 tile product: row `m` of A is the concatenation over taps `t` of
/// `a[offsets[t * mr + m] ..][.. quads * 4]`; B is quad-packed `[taps * quads][nr][4]`. Exact
/// (int32 wrap-around), or with int16 pair saturation when `pairs`.
#[allow(clippy::too_many_arguments)]
pub fn igemm_u8s8(
    mr: usize,
    nr: usize,
    taps: usize,
    quads: usize,
    a: &[u8],
    offsets: &[usize],
    b: &[i8],
    c: &mut [i32],
    pairs: bool,
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
                    let dot = if pairs {
                        sat16(p(0) + p(1)) + sat16(p(2) + p(3))
                    } else {
                        p(0) + p(1) + p(2) + p(3)
                    };
                    c[m * nr + n] = c[m * nr + n].wrapping_add(dot);
                }
            }
        }
    }
}

/// Indirect i16 x i16 tile product: like [`igemm_u8s8`] with pairs of i16 values, exact.
#[allow(clippy::too_many_arguments)]
pub fn igemm_i16(
    mr: usize,
    nr: usize,
    taps: usize,
    pairs: usize,
    a: &[i16],
    offsets: &[usize],
    b: &[i16],
    c: &mut [i32],
) {
    c[..mr * nr].fill(0);
    for t in 0..taps {
        for p in 0..pairs {
            let bp = &b[(t * pairs + p) * nr * 2..][..nr * 2];
            for m in 0..mr {
                let at = offsets[t * mr + m] + p * 2;
                let (a0, a1) = (a[at] as i32, a[at + 1] as i32);
                for n in 0..nr {
                    let dot = a0 * bp[n * 2] as i32 + a1 * bp[n * 2 + 1] as i32;
                    c[m * nr + n] = c[m * nr + n].wrapping_add(dot);
                }
            }
        }
    }
}

/// `C[m][n] = sum_k A[m][k] * B[k][n]`, exact, on pair-packed i16 x i16 panels.
pub fn gemm_i16(mr: usize, nr: usize, kp: usize, a: &[i16], b: &[i16], c: &mut [i32]) {
    debug_assert!(a.len() >= kp * mr * 2 && b.len() >= kp * nr * 2 && c.len() >= mr * nr);
    c[..mr * nr].fill(0);
    for p in 0..kp {
        let ap = &a[p * mr * 2..(p + 1) * mr * 2];
        let bp = &b[p * nr * 2..(p + 1) * nr * 2];
        for m in 0..mr {
            for n in 0..nr {
                let dot = ap[m * 2] as i32 * bp[n * 2] as i32
                    + ap[m * 2 + 1] as i32 * bp[n * 2 + 1] as i32;
                c[m * nr + n] = c[m * nr + n].wrapping_add(dot);
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

/// For each of up to 64 accumulators `a` (float32 integers, or int32 plus `acc_offset` with
/// wrapping): `v = clamp((a + int_bias) * scale + offset, lo, hi)`, rounded to nearest through
/// `+ 1.5 * 2^23`, plus the zero point. Returns the mask of elements too near a tie for the
/// estimate (bit `i` for element `i`), which the caller recomputes exactly. SIMD kernels compute
/// the same float32 operations in the same order, so they agree bit for bit.
pub fn requantize_f32<A: EstimateInput, T: EstimateOutput>(accs: &[A], acc_offset: i32, e: &F32Estimate, out: &mut [T]) -> u64 {
    const MAGIC: f32 = 12_582_912.0;
    let n = accs.len().min(64);
    let (vlo, vhi) = (e.lo as f32, e.hi as f32);
    let bias = (MAGIC.to_bits() as i32).wrapping_sub(e.zero_point);
    let mut unsure = 0u64;
    for (i, (&a, o)) in accs[..n].iter().zip(out.iter_mut()).enumerate() {
        let p = (a.offset_f32(acc_offset) + e.int_bias) * e.scale;
        let v = (p + e.offset).max(vlo).min(vhi);
        let t = v + MAGIC;
        let r = t - MAGIC;
        if (v - r).abs() >= e.threshold {
            unsure |= 1 << i;
        }
        *o = T::from_i32((t.to_bits() as i32).wrapping_sub(bias));
    }
    unsure
}

/// Direct tile (see `kernels::direct_u8s8`): `acc[m * tw + j] = sum over steps s, i < 4 of
/// w[(s * mr + m) * 4 + i] * b[steps[s] + 4 j + i]`, in wrapping int32; with `pairs`, each pair
/// of products (`i = 0, 1` and `i = 2, 3`) is first summed in saturating int16.
pub fn direct_u8s8(mr: usize, tw: usize, pairs: bool, steps: &[usize], b: &[u8], w: &[i8], acc: &mut [i32]) {
    acc[..mr * tw].fill(0);
    for (s, &offset) in steps.iter().enumerate() {
        let bs = &b[offset..offset + 4 * tw];
        for m in 0..mr {
            let wq = &w[(s * mr + m) * 4..(s * mr + m) * 4 + 4];
            let row = &mut acc[m * tw..(m + 1) * tw];
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

/// Direct tile on i16 pairs: `acc[m * tw + j] = sum over steps s, i < 2 of
/// w[(s * mr + m) * 2 + i] * b[steps[s] + 2 j + i]`, in wrapping int32.
pub fn direct_i16(mr: usize, tw: usize, steps: &[usize], b: &[i16], w: &[i16], acc: &mut [i32]) {
    acc[..mr * tw].fill(0);
    for (s, &offset) in steps.iter().enumerate() {
        let bs = &b[offset..offset + 2 * tw];
        for m in 0..mr {
            let wp = &w[(s * mr + m) * 2..(s * mr + m) * 2 + 2];
            let row = &mut acc[m * tw..(m + 1) * tw];
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

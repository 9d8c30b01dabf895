//! Exact requantization: the real value of the output, rounded once, to nearest, ties to even.

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Zero};

use super::{RequantTrace, Requantizer};
use crate::kernels::KernelIsa;
use crate::kernels::scalar::{EstimateInput, EstimateOutput, F32Estimate};
use crate::layer::Bias;

/// Splits a finite `f64` into `(m, e)` with `x == m * 2^e` exactly.
fn decompose(x: f64) -> (i64, i32) {
    let bits = x.to_bits();
    let negative = bits >> 63 != 0;
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let fraction = (bits & ((1u64 << 52) - 1)) as i64;
    let (m, e) = if exp_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1i64 << 52), exp_bits - 1075)
    };
    (if negative { -m } else { m }, e)
}

/// Per-channel constants of `y = (acc * a + b) / d`, the output in quantized units before the
/// zero point, with `d > 0`.
struct ChannelRatio {
    a: BigInt,
    b: BigInt,
    d: BigInt,
    /// The same constants when they are small enough for 128-bit arithmetic with any
    /// accumulator below 2^63.
    small: Option<(i128, i128, i128)>,
    /// int32 bias added to the accumulator before scaling.
    int_bias: i64,
    /// `a / d` and `b / d` as floats: the fast first estimate, trusted only away from ties.
    scale: f64,
    offset: f64,
}

impl ChannelRatio {
    fn new(
        input_scale: f64,
        weight_scale: f64,
        output_scale: f64,
        float_bias: f32,
        int_bias: i64,
    ) -> Self {
        let (mi, ei) = decompose(input_scale);
        let (mw, ew) = decompose(weight_scale);
        let (mo, eo) = decompose(output_scale);
        let (mb, eb) = decompose(float_bias as f64);
        let ep = ei + ew;
        let e = if mb == 0 { ep } else { ep.min(eb) };
        let mut a = (BigInt::from(mi) * BigInt::from(mw)) << (ep - e) as usize;
        let mut b = if mb == 0 {
            BigInt::zero()
        } else {
            BigInt::from(mb) << (eb - e) as usize
        };
        let mut d = BigInt::from(mo);
        if eo >= e {
            d <<= (eo - e) as usize;
        } else {
            a <<= (e - eo) as usize;
            b <<= (e - eo) as usize;
        }
        let fits = |x: &BigInt, bits: u64| x.bits() <= bits;
        let small = (fits(&a, 62) && fits(&b, 125) && fits(&d, 126)).then(|| {
            (
                i128::try_from(&a).expect("fits"),
                i128::try_from(&b).expect("fits"),
                i128::try_from(&d).expect("fits"),
            )
        });
        let scale = ratio_to_f64(&a, &d);
        let offset = ratio_to_f64(&b, &d);
        ChannelRatio {
            a,
            b,
            d,
            small,
            int_bias,
            scale,
            offset,
        }
    }

    /// `round_half_even((acc * a + b) / d)`, saturated into `[lo, hi]`.
    #[inline]
    fn round_clamped(&self, acc: i64, lo: i64, hi: i64) -> i64 {
        // A float estimate decides unless it lies within its error bound of a tie (or beyond the
        // range where f64 holds integers exactly); the bound is far above the few ulps the
        // estimate can be off by, and ties need the exact arithmetic below anyway.
        let x = (acc as i128 + self.int_bias as i128) as f64;
        let v = x * self.scale + self.offset;
        let margin = ((x * self.scale).abs() + self.offset.abs() + 1.0) * (1.0 / (1u64 << 40) as f64);
        let r = v.round();
        if v.abs() < (1u64 << 50) as f64 && (v - r).abs() < 0.5 - margin {
            return (r as i64).clamp(lo, hi);
        }
        if v - margin > hi as f64 + 1.0 {
            return hi;
        }
        if v + margin < lo as f64 - 1.0 {
            return lo;
        }
        self.round_clamped_exact(acc, lo, hi)
    }

    /// [`Self::round_clamped`] in exact integer arithmetic.
    fn round_clamped_exact(&self, acc: i64, lo: i64, hi: i64) -> i64 {
        let acc = acc as i128 + self.int_bias as i128;
        if let Some((a, b, d)) = self.small {
            if let Some(n) = acc.checked_mul(a).and_then(|n| n.checked_add(b)) {
                let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
                let up = r > d - r || (r == d - r && q.rem_euclid(2) == 1);
                let q = q + up as i128;
                return q.clamp(lo as i128, hi as i128) as i64;
            }
        }
        let n = BigInt::from(acc) * &self.a + &self.b;
        let (q, r) = n.div_mod_floor(&self.d);
        let twice = &r << 1usize;
        let up = twice > self.d || (twice == self.d && q.is_odd());
        let q = if up { q + BigInt::one() } else { q };
        if q < BigInt::from(lo) {
            lo
        } else if q > BigInt::from(hi) {
            hi
        } else {
            i64::try_from(&q).expect("within [lo, hi]")
        }
    }

    /// The value `(acc * a + b) / d` as a float, for display.
    fn value(&self, acc: i64) -> f64 {
        let n = (BigInt::from(acc) + self.int_bias) * &self.a + &self.b;
        ratio_to_f64(&n, &self.d)
    }
}

/// `n / d` to within a few ulps (for display and diagnostics, not for results).
fn ratio_to_f64(n: &BigInt, d: &BigInt) -> f64 {
    let shift = d.bits() as i64 - n.bits() as i64 + 64;
    let scaled = if shift >= 0 {
        (n << shift as usize) / d
    } else {
        (n >> (-shift) as usize) / d
    };
    crate::numerics::scaled_bigint_to_f64(&scaled, -shift)
}

/// Rounds the exact real value of each output, `(acc * s_in * s_w[oc] + bias) / s_out`, to the
/// nearest integer with ties to even, adds the zero point and clamps to the output range. The
/// scales and a float bias are taken as the exact binary numbers they are; an int32 bias is added
/// to the accumulator. The arithmetic is exact (128-bit, or arbitrary precision when needed).
pub struct ExactRequantizer {
    channels: Vec<ChannelRatio>,
    zero_point: i64,
    lo: i64,
    hi: i64,
    /// Per channel, for [`ExactRequantizer::requantize_row`]: the float estimate's constants.
    int_bias: Vec<f64>,
    scale: Vec<f64>,
    offset: Vec<f64>,
    /// Per channel, for [`ExactRequantizer::requantize_run_f32`]; empty when the output range
    /// is too wide for that path.
    run_estimates: Vec<F32Estimate>,
    /// The same constants by field, for the row path.
    row_columns: EstimateColumns,
}

/// [`F32Estimate`] fields per channel, as columns.
#[derive(Default)]
struct EstimateColumns {
    int_bias: Vec<f32>,
    scale: Vec<f32>,
    offset: Vec<f32>,
    threshold: Vec<f32>,
}

/// The float32 path's error allowance per unit of magnitude (see `requantize_run_f32`).
const RUN_EPS: f32 = 1.0 / (1u32 << 19) as f32;
/// The float32 path handles outputs within this distance of the zero point, and channels whose
/// constant terms stay below it.
const RUN_RANGE: i64 = 1 << 16;

impl ExactRequantizer {
    /// `weight_scale(oc)` gives each channel's weight scale; `range` is the output's quantized
    /// range (after any fused activation).
    pub fn new(
        input_scale: f64,
        weight_scale: impl Fn(usize) -> f64,
        output_scale: f64,
        bias: Option<&Bias>,
        out_channels: usize,
        zero_point: i32,
        range: (i32, i32),
    ) -> Self {
        let channels: Vec<ChannelRatio> = (0..out_channels)
            .map(|oc| {
                let (fb, ib) = match bias {
                    Some(Bias::Float32(v)) => (v[oc], 0),
                    Some(Bias::Int32(v)) => (0.0, v[oc] as i64),
                    None => (0.0, 0),
                };
                ChannelRatio::new(input_scale, weight_scale(oc), output_scale, fb, ib)
            })
            .collect();
        let (lo, hi) = (range.0 as i64 - zero_point as i64, range.1 as i64 - zero_point as i64);
        let run_estimates = if lo.abs() <= RUN_RANGE && hi.abs() <= RUN_RANGE {
            channels
                .iter()
                .map(|c| {
                    let (ib, sc, of) = (c.int_bias as f32, c.scale as f32, c.offset as f32);
                    let constant = (ib * sc).abs() + of.abs();
                    let range = lo.abs().max(hi.abs()) as f32;
                    // |p| <= range + |offset| for every element the clamp leaves alone.
                    let allowance = (range + 2.0 * of.abs() + (ib * sc).abs() + 1.0) * RUN_EPS;
                    let usable = constant.is_finite() && constant < RUN_RANGE as f32 && allowance < 0.25;
                    F32Estimate {
                        int_bias: ib,
                        scale: sc,
                        offset: of,
                        // Unusable: every element takes the exact path.
                        threshold: if usable { 0.5 - allowance } else { -1.0 },
                        lo: lo as i32,
                        hi: hi as i32,
                        zero_point,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let row_columns = EstimateColumns {
            int_bias: run_estimates.iter().map(|e| e.int_bias).collect(),
            scale: run_estimates.iter().map(|e| e.scale).collect(),
            offset: run_estimates.iter().map(|e| e.offset).collect(),
            threshold: run_estimates.iter().map(|e| e.threshold).collect(),
        };
        ExactRequantizer {
            run_estimates,
            row_columns,
            int_bias: channels.iter().map(|c: &ChannelRatio| c.int_bias as f64).collect(),
            scale: channels.iter().map(|c| c.scale).collect(),
            offset: channels.iter().map(|c| c.offset).collect(),
            channels,
            zero_point: zero_point as i64,
            lo: range.0 as i64,
            hi: range.1 as i64,
        }
    }

    /// Requantizes the int32 accumulators of channels `oc0 ..` (one output pixel) into `out`:
    /// the float estimate for every element in one straight pass, then exact arithmetic for the
    /// few that lie near a tie. The same integers as [`Requantizer::requantize`]. At most 64
    /// elements per call.
    #[inline(always)]
    pub fn requantize_row(&self, accs: &[i32], oc0: usize, out: &mut [i32]) {
        let n = accs.len().min(out.len()).min(64);
        if let Some(first) = self.run_estimates.first() {
            return self.requantize_row_f32(first, &accs[..n], oc0, &mut out[..n]);
        }
        let params = RowParams {
            int_bias: &self.int_bias[oc0..oc0 + n],
            scale: &self.scale[oc0..oc0 + n],
            offset: &self.offset[oc0..oc0 + n],
        };
        self.requantize_fast(&accs[..n], &params, &mut out[..n], |i| oc0 + i);
    }

    /// Requantizes accumulators of channel `oc` (float32 integers below 2^24 in magnitude, as
    /// the planar kernels produce them, or int32 plus `acc_offset` with wrapping) into `out`, at
    /// most 64 per call: the same integers as [`Requantizer::requantize`].
    ///
    /// The estimate runs in float32. With `x = acc + b` (`b` the int32 bias), `p = x * scale`
    /// and `v = p + offset`, each of the five roundings (`acc` and `b` to float32 and their sum,
    /// the product with the rounded `scale`, the sum with the rounded `offset`) errs by at most
    /// 2^-24 of its own magnitude, so `v` is within `2^-22 * ((|x| + |b|) * |scale| + |offset|)`
    /// of the true value. `v` is clamped to the output range before rounding (adding
    /// `1.5 * 2^23` leaves the rounded integer in the low mantissa bits). An element the clamp
    /// leaves alone has `|p| <= R + |offset|` (`R` the range's magnitude), so its error is below
    /// `2^-22 * (R + 2 |offset| + |b * scale|)`; the allowance is 8 times that (plus 2^-19), and
    /// elements nearer than it to a tie go to the exact path. A clamped element is right: with the
    /// range and constants below 2^16 (else the channel always takes the exact path) either
    /// `|p| < 2^18` and the error is below 0.07, or `|v|` is far outside the range on the true
    /// value's side.
    #[inline(always)]
    pub fn requantize_run_f32<A: EstimateInput, T: EstimateOutput>(
        &self,
        isa: KernelIsa,
        accs: &[A],
        acc_offset: i32,
        oc: usize,
        out: &mut [T],
    ) {
        let n = accs.len().min(out.len()).min(64);
        let unsure = match self.run_estimates.get(oc) {
            Some(e) => crate::kernels::requantize_f32(isa, &accs[..n], acc_offset, e, &mut out[..n]),
            None => u64::MAX,
        };
        if unsure != 0 {
            for i in 0..n {
                if unsure >> i & 1 == 1 {
                    let acc = if A::IS_F32 { accs[i].to_i64() } else { (accs[i].to_i64() as i32).wrapping_add(acc_offset) as i64 };
                    out[i] = T::from_i32(self.requantize(acc, oc));
                }
            }
        }
    }

    /// The row path on the float32 estimate of [`Self::requantize_run_f32`], with each
    /// element's own channel constants (a loop the compiler vectorizes). `first` carries the
    /// constants common to all channels (range, zero point, allowance).
    #[inline(always)]
    fn requantize_row_f32(&self, first: &F32Estimate, accs: &[i32], oc0: usize, out: &mut [i32]) {
        const MAGIC: f32 = 12_582_912.0;
        let n = accs.len();
        let cols = &self.row_columns;
        let (ib, sc) = (&cols.int_bias[oc0..oc0 + n], &cols.scale[oc0..oc0 + n]);
        let (of, th) = (&cols.offset[oc0..oc0 + n], &cols.threshold[oc0..oc0 + n]);
        let (vlo, vhi) = (first.lo as f32, first.hi as f32);
        let bias = (MAGIC.to_bits() as i32).wrapping_sub(first.zero_point);
        let mut unsure = [false; 64];
        let mut any_unsure = false;
        for i in 0..n {
            let p = (accs[i] as f32 + ib[i]) * sc[i];
            let v = (p + of[i]).max(vlo).min(vhi);
            let t = v + MAGIC;
            let r = t - MAGIC;
            unsure[i] = (v - r).abs() >= th[i];
            any_unsure |= unsure[i];
            out[i] = (t.to_bits() as i32).wrapping_sub(bias);
        }
        if any_unsure {
            for i in 0..n {
                if unsure[i] {
                    out[i] = self.requantize(accs[i] as i64, oc0 + i);
                }
            }
        }
    }

    /// The shared body of the row and run paths: `params.get(i)` are element `i`'s constants,
    /// `channel(i)` its output channel.
    #[inline(always)]
    fn requantize_fast<P: FastParams>(
        &self,
        accs: &[i32],
        params: &P,
        out: &mut [i32],
        channel: impl Fn(usize) -> usize,
    ) {
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to integer
        const EPS: f64 = 1.0 / (1u64 << 40) as f64;
        const LIMIT: f64 = (1u64 << 50) as f64;
        let n = accs.len();
        let zp = self.zero_point;
        let (lo, hi) = ((self.lo - zp) as f64, (self.hi - zp) as f64);
        let mut unsure = [false; 64];
        let mut any_unsure = false;
        let (zp32, lo32, hi32) = (zp as i32, lo as i32, hi as i32);
        for i in 0..n {
            let (ib, sc, of) = params.get(i);
            let x = accs[i] as f64 + ib;
            let p = x * sc;
            let v = p + of;
            let t = v + MAGIC;
            let r = t - MAGIC;
            let margin = (p.abs() + of.abs() + 1.0) * EPS;
            unsure[i] = !((v - r).abs() < 0.5 - margin && v.abs() < LIMIT);
            any_unsure |= unsure[i];
            // The low 32 bits of `t` hold the rounded integer (two's complement) while
            // |v| < 2^51; elements outside that range are unsure and redone below.
            let q = t.to_bits() as u32 as i32;
            out[i] = q.clamp(lo32, hi32) + zp32;
        }
        if any_unsure {
            for i in 0..n {
                if unsure[i] {
                    out[i] = self.requantize(accs[i] as i64, channel(i));
                }
            }
        }
    }

    /// The exact real output of channel `oc` for accumulator `acc`, in quantized units
    /// including the zero point, before rounding and clamping (approximated as `f64`).
    pub fn real_value(&self, acc: i64, oc: usize) -> f64 {
        self.channels[oc].value(acc) + self.zero_point as f64
    }
}

/// Where the fast requantization path finds each element's constants.
trait FastParams {
    /// `(int_bias, scale, offset)` of element `i`.
    fn get(&self, i: usize) -> (f64, f64, f64);
}

/// One output pixel: consecutive channels.
struct RowParams<'a> {
    int_bias: &'a [f64],
    scale: &'a [f64],
    offset: &'a [f64],
}

impl FastParams for RowParams<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> (f64, f64, f64) {
        (self.int_bias[i], self.scale[i], self.offset[i])
    }
}

impl Requantizer for ExactRequantizer {
    type Acc = i64;

    fn trace(&self, acc: i64, oc: usize) -> RequantTrace {
        // "Unclamped" within +-2^61, far outside any output type.
        let bound = 1i64 << 61;
        let unclamped = self.channels[oc].round_clamped(acc, -bound, bound) + self.zero_point;
        RequantTrace {
            value: self.real_value(acc, oc),
            unclamped,
            output: unclamped.clamp(self.lo, self.hi) as i32,
        }
    }

    fn requantize(&self, acc: i64, oc: usize) -> i32 {
        let y = self.channels[oc].round_clamped(
            acc,
            self.lo - self.zero_point,
            self.hi - self.zero_point,
        );
        (y + self.zero_point) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requantizer(si: f64, sw: f64, so: f64, bias: Option<Bias>) -> ExactRequantizer {
        ExactRequantizer::new(si, |_| sw, so, bias.as_ref(), 1, 0, (i32::MIN, i32::MAX))
    }

    #[test]
    fn rounds_ties_to_even_exactly() {
        let r = requantizer(0.5, 1.0, 1.0, None);
        let got: Vec<i32> = (-5..=5).map(|a| r.requantize(a, 0)).collect();
        assert_eq!(got, vec![-2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2]);
    }

    #[test]
    fn scales_that_are_not_decimal_fractions_are_taken_exactly() {
        // 0.1 is not 1/10 in binary: 5 * 0.1 / 1.0 is slightly above 0.5, so it rounds up,
        // while a true tie rounds to even.
        let r = requantizer(0.1, 1.0, 1.0, None);
        assert_eq!(r.requantize(5, 0), 1);
        let r = requantizer(0.1f32 as f64, 1.0, 1.0, None);
        assert_eq!(r.requantize(5, 0), 1); // f32(0.1) is also above 0.1
        let r = requantizer(0.125, 1.0, 0.25, None);
        assert_eq!(r.requantize(1, 0), 0); // exactly 0.5
        assert_eq!(r.requantize(3, 0), 2); // exactly 1.5
    }

    #[test]
    fn forum_case_is_negative_and_clamps_to_zero() {
        let r = ExactRequantizer::new(
            0.012728f32 as f64,
            |_| 0.00292f32 as f64,
            0.02091f32 as f64,
            Some(&Bias::Float32(vec![0.0])),
            1,
            0,
            (0, 255),
        );
        assert_eq!(r.requantize(-13861, 0), 0);
        let v = r.real_value(-13861, 0);
        assert!((v + 24.637).abs() < 1e-3, "{v}");
        assert_eq!(r.requantize(4003, 0), 7);
    }

    #[test]
    fn float_bias_and_int_bias_enter_exactly() {
        // bias 0.25 real = 0.5 output units at scale 0.5: acc 0 -> 0.5 -> 0 (even).
        let r = requantizer(1.0, 1.0, 0.5, Some(Bias::Float32(vec![0.25])));
        assert_eq!(r.requantize(0, 0), 0);
        assert_eq!(r.requantize(1, 0), 2); // 2.5 -> 2
        let r = requantizer(0.5, 1.0, 1.0, Some(Bias::Int32(vec![3])));
        assert_eq!(r.requantize(0, 0), 2); // 1.5 -> 2
        // A tiny bias moves a tie off the boundary.
        let r = requantizer(1.0, 1.0, 2.0, Some(Bias::Float32(vec![1e-30])));
        assert_eq!(r.requantize(1, 0), 1);
        let r = requantizer(1.0, 1.0, 2.0, Some(Bias::Float32(vec![-1e-30])));
        assert_eq!(r.requantize(1, 0), 0);
    }

    #[test]
    fn the_float_estimate_agrees_with_exact_arithmetic() {
        // Scales that put many accumulators on or next to ties.
        for (si, sw, so) in [(0.5, 1.0, 1.0), (0.1, 0.3, 0.7), (1.0 / 3.0, 3.0, 2.0), (1e-3, 2.5e-3, 1e-5)] {
            for bias in [None, Some(Bias::Float32(vec![0.25])), Some(Bias::Int32(vec![7]))] {
                let r = ExactRequantizer::new(si, |_| sw, so, bias.as_ref(), 1, 3, (i32::MIN, i32::MAX));
                let ch = &r.channels[0];
                for acc in (-20_000i64..20_000).chain([1 << 40, -(1 << 40), i32::MAX as i64]) {
                    let (lo, hi) = (-(1i64 << 45), 1i64 << 45);
                    assert_eq!(ch.round_clamped(acc, lo, hi), ch.round_clamped_exact(acc, lo, hi), "{acc}");
                    assert_eq!(ch.round_clamped(acc, -3, 250), ch.round_clamped_exact(acc, -3, 250), "{acc}");
                }
            }
        }
    }

    #[test]
    fn rows_agree_with_elements() {
        let scales: Vec<f64> = (0..40).map(|i| 0.001 + 0.0003 * i as f64).collect();
        let bias = Bias::Float32((0..40).map(|i| i as f32 * 0.37 - 5.0).collect());
        // A narrow range (the float32 estimate) and a wide one (the f64 estimate).
        for range in [(0, 255), (i32::MIN, i32::MAX)] {
            let r = ExactRequantizer::new(0.02, |oc| scales[oc], 0.05, Some(&bias), 40, 7, range);
            for step in [977, 3, 55_555_555] {
                let accs: Vec<i32> = (0..40).map(|i| (i * step - 20 * step).max(i32::MIN / 2 + 1) * 2).collect();
                for start in [0, 3] {
                    let mut out = vec![0; 40 - start];
                    r.requantize_row(&accs[start..], start, &mut out);
                    for (i, &o) in out.iter().enumerate() {
                        assert_eq!(o, r.requantize(accs[start + i] as i64, start + i), "{range:?} {step}");
                    }
                }
            }
        }
    }

    #[test]
    fn float32_runs_agree_with_elements() {
        // Scales with many ties, int32 and float biases, narrow and wide output ranges
        // (int32 outputs fall back to the exact path), large and tiny scale ratios.
        let cases: [(f64, f64, f64, Option<Bias>, i32, (i32, i32)); 7] = [
            (0.5, 1.0, 1.0, None, 3, (0, 255)),
            (0.1, 0.3, 0.7, Some(Bias::Int32(vec![7, -1_000_000])), -5, (-128, 127)),
            (1.0 / 3.0, 3.0, 2.0, Some(Bias::Float32(vec![0.25, -3.5])), 0, (0, 255)),
            (1e-3, 2.5e-3, 1e-5, Some(Bias::Int32(vec![i32::MAX, i32::MIN])), 128, (0, 255)),
            (0.02, 0.002, 1e-3, Some(Bias::Float32(vec![0.5, -0.5])), 128, (128, 255)),
            (1.0, 1.0, 1.0, None, 0, (i32::MIN, i32::MAX)),
            (1e30, 1e30, 1e-30, None, 0, (0, 255)),
        ];
        for (si, sw, so, bias, zp, range) in cases {
            let channels = if bias.is_some() { 2 } else { 1 };
            let r = ExactRequantizer::new(si, |_| sw, so, bias.as_ref(), channels, zp, range);
            for oc in 0..channels {
                let accs: Vec<f32> = (-40_000..40_000)
                    .step_by(3)
                    .chain([-(1 << 24) + 1, (1 << 24) - 1, 1 << 23, -(1 << 23)])
                    .map(|a| a as f32)
                    .collect();
                let wide: Vec<i32> = (-40_000i64..40_000)
                    .step_by(7)
                    .map(|a| (a * 53_687) as i32)
                    .chain([i32::MIN, i32::MAX, i32::MIN + 1, 1 << 30])
                    .collect();
                for isa in KernelIsa::available() {
                    for chunk in wide.chunks(57) {
                        // Through an offset too: the accumulator is `a - 1000 + 1000`.
                        let shifted: Vec<i32> = chunk.iter().map(|&a| a.wrapping_sub(1000)).collect();
                        let mut out = vec![0i32; chunk.len()];
                        r.requantize_run_f32(isa, &shifted, 1000, oc, &mut out);
                        for (&a, &o) in chunk.iter().zip(&out) {
                            assert_eq!(o, r.requantize(a as i64, oc), "{isa}: int32 acc {a} channel {oc}");
                        }
                        if range.1 - range.0 <= 255 {
                            let mut bytes = vec![0u8; chunk.len()];
                            r.requantize_run_f32(isa, chunk, 0, oc, &mut bytes);
                            for (&a, &o) in chunk.iter().zip(&bytes) {
                                assert_eq!(o, r.requantize(a as i64, oc) as u8, "{isa}: int32 acc {a} as bytes");
                            }
                        }
                    }
                    for chunk in accs.chunks(61) {
                        let mut out = vec![0i32; chunk.len()];
                        r.requantize_run_f32(isa, chunk, 0, oc, &mut out);
                        for (&a, &o) in chunk.iter().zip(&out) {
                            assert_eq!(o, r.requantize(a as i64, oc), "{isa}: acc {a} channel {oc} scales {si} {sw} {so}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn huge_accumulators_take_the_big_integer_path() {
        let r = requantizer(1e-300, 1.0, 1e-300, None);
        assert_eq!(r.requantize(1 << 20, 0), 1 << 20);
        let r = requantizer(1.0, 1.0, 1.0, None);
        assert_eq!(r.requantize(i64::MAX / 2, 0), i32::MAX);
    }
}

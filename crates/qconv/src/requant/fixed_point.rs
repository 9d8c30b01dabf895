//! TFLite's fixed-point requantization: a Q31 multiplier and a power-of-two shift per channel,
//! applied with integer arithmetic only (`docs/numerics/tflite-reference.md`).

use super::{RequantTrace, Requantizer};

/// How `MultiplyByQuantizedMultiplier` rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedPointRounding {
    /// The default build: a rounding doubling high multiply (ties toward +inf), then a rounding
    /// right shift (ties away from zero): two roundings.
    Double,
    /// `TFLITE_SINGLE_ROUNDING=1`: one 64-bit product, one rounding right shift, half up (toward
    /// +inf).
    Single,
}

/// TFLite's `QuantizeMultiplier`: `real = multiplier * 2^(shift - 31)` with `multiplier` in
/// `[2^30, 2^31)`. The fraction of `frexp` is rounded half away from zero; a fraction that rounds
/// to 2^31 is halved with the shift raised; shifts below -31 flush to multiplier 0, shift 0. With
/// single rounding, shifts above 30 saturate to multiplier `2^31 - 1`, shift 30.
pub fn quantize_multiplier(real: f64, rounding: FixedPointRounding) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (fraction, mut shift) = frexp(real);
    let mut q = (fraction * (1u64 << 31) as f64).round() as i64;
    if q == 1 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q = 0;
    }
    if rounding == FixedPointRounding::Single && shift > 30 {
        shift = 30;
        q = (1 << 31) - 1;
    }
    (q as i32, shift)
}

/// `frexp`: `x = fraction * 2^exponent` with `|fraction|` in `[0.5, 1)`, for finite non-zero `x`.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i32;
    if exponent_bits == 0 {
        // Subnormal: scale into the normal range first.
        let (f, e) = frexp(x * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (f, e - 54);
    }
    let exponent = exponent_bits - 1022;
    let fraction = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (fraction, exponent)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `a * b / 2^31` rounded to nearest, saturating
/// the one overflowing case `a == b == i32::MIN`. The nudge (`2^30`, or `1 - 2^30` for a negative
/// product) and the truncating division put ties toward +inf: 2.5 -> 3, -2.5 -> -2.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C division truncates toward zero, as Rust's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero
/// (`0 <= exponent <= 31`).
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    debug_assert!(exponent <= 31);
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier(int32 x, multiplier, shift)`.
///
/// Double rounding: `x * 2^max(shift, 0)` (wrapping int32, as the C++ code computes it), a
/// rounding doubling high multiply, then a rounding right shift by `max(-shift, 0)`. Single
/// rounding: `(x * multiplier + 2^(30 - shift)) >> (31 - shift)` in 64 bits.
pub fn multiply_by_quantized_multiplier(
    x: i32,
    multiplier: i32,
    shift: i32,
    rounding: FixedPointRounding,
) -> i32 {
    match rounding {
        FixedPointRounding::Double => {
            let left = shift.max(0) as u32;
            let right = (-shift).max(0) as u32;
            let shifted = x.wrapping_mul(1i32.wrapping_shl(left));
            rounding_divide_by_pot(
                saturating_rounding_doubling_high_mul(shifted, multiplier),
                right,
            )
        }
        FixedPointRounding::Single => {
            let total = (31 - shift) as u32;
            let round = 1i64 << (total - 1);
            ((x as i64 * multiplier as i64 + round) >> total) as i32
        }
    }
}

/// `y = clamp(MultiplyByQuantizedMultiplier(acc + bias[oc], M[oc], shift[oc]) + zp)`: TFLite's
/// integer requantization (reference kernels).
#[derive(Clone, Debug)]
pub struct FixedPointRequantizer {
    pub multipliers: Vec<i32>,
    pub shifts: Vec<i32>,
    /// Int32 bias per output channel (zeros without bias), added with int32 wrap-around.
    pub bias: Vec<i32>,
    pub zero_point: i32,
    /// The quantized activation range.
    pub range: (i32, i32),
    pub rounding: FixedPointRounding,
}

impl FixedPointRequantizer {
    /// The scaled accumulator before the zero point is added.
    #[inline(always)]
    pub fn scaled(&self, acc: i32, oc: usize) -> i32 {
        multiply_by_quantized_multiplier(
            acc.wrapping_add(self.bias[oc]),
            self.multipliers[oc],
            self.shifts[oc],
            self.rounding,
        )
    }

    /// The real multiplier the fixed-point pair stands for.
    pub fn real_multiplier(&self, oc: usize) -> f64 {
        self.multipliers[oc] as f64 * 2f64.powi(self.shifts[oc] - 31)
    }
}

impl Requantizer for FixedPointRequantizer {
    type Acc = i32;

    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i32 {
        self.scaled(acc, oc)
            .wrapping_add(self.zero_point)
            .clamp(self.range.0, self.range.1)
    }

    fn trace(&self, acc: i32, oc: usize) -> RequantTrace {
        let biased = acc.wrapping_add(self.bias[oc]);
        RequantTrace {
            value: biased as f64 * self.real_multiplier(oc) + self.zero_point as f64,
            unclamped: self.scaled(acc, oc) as i64 + self.zero_point as i64,
            output: self.requantize(acc, oc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_multiplier_matches_tflite() {
        // 0.25 = 0.5 * 2^-1: multiplier 2^30, shift -1.
        assert_eq!(
            quantize_multiplier(0.25, FixedPointRounding::Double),
            (1 << 30, -1)
        );
        // A fraction that rounds up to 2^31 is halved and the shift raised.
        let just_below_one = 1.0 - 2f64.powi(-40);
        assert_eq!(
            quantize_multiplier(just_below_one, FixedPointRounding::Double),
            (1 << 30, 1)
        );
        // Tiny multipliers flush to zero.
        assert_eq!(
            quantize_multiplier(2f64.powi(-40), FixedPointRounding::Double),
            (0, 0)
        );
        // Single rounding saturates large shifts.
        assert_eq!(
            quantize_multiplier(2f64.powi(40), FixedPointRounding::Single),
            (i32::MAX, 30)
        );
        for x in [1e-300, 0.1, 123.456, 2f64.powi(-1074), 3.5e-310] {
            let (f, e) = frexp(x);
            assert!((0.5..1.0).contains(&f), "{x}");
            // Scale back in two steps so that neither underflows.
            assert_eq!(f * 2f64.powi(e + 600) * 2f64.powi(-600), x, "{x}");
        }
    }

    #[test]
    fn double_rounding_rounds_twice_half_away_from_zero() {
        let (m, s) = (1 << 30, -1); // 0.25
        let d = FixedPointRounding::Double;
        // 5 * 0.25 = 1.25: the high multiply gives 2.5 -> 3, the shift 1.5 -> 2.
        assert_eq!(multiply_by_quantized_multiplier(5, m, s, d), 2);
        // -5 * 0.25: the high multiply's tie -2.5 goes up to -2, the shift gives -1 exactly.
        assert_eq!(multiply_by_quantized_multiplier(-5, m, s, d), -1);
        // -7 * 0.25 = -1.75: -3.5 -> -3, then -1.5 -> -2 (away from zero).
        assert_eq!(multiply_by_quantized_multiplier(-7, m, s, d), -2);
        // Single rounding: 1.25 -> 1, -1.25 -> -1, and ties go up: -6 * 0.25 = -1.5 -> -1.
        let r = FixedPointRounding::Single;
        assert_eq!(multiply_by_quantized_multiplier(5, m, s, r), 1);
        assert_eq!(multiply_by_quantized_multiplier(-6, m, s, r), -1);
        assert_eq!(multiply_by_quantized_multiplier(-6, m, s, d), -2);
        assert_eq!(multiply_by_quantized_multiplier(6, m, s, r), 2);
    }

    #[test]
    fn gemmlowp_primitives() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, 3), 2); // 1.5 -> 2
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, -3), -1); // -1.5 -> -1
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, -5), -2); // -2.5 -> -2
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 29, -5), -1); // -1.25 -> -1
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
    }
}

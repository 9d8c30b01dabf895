//! Bit-level building blocks shared by the engine models: the exact behaviour of the rounding,
//! conversion and saturation steps engines are made of. Each function names the machine operation
//! it reproduces so that a model reads like the engine's own sequence of instructions.

/// Float to int32 conversion as `cvtps2dq` / `_mm256_cvtps_epi32` performs it under the default
/// MXCSR: round to nearest, ties to even; NaN and values outside the int32 range give `i32::MIN`
/// (the "integer indefinite" value), not a saturated result.
#[inline(always)]
pub fn cvtps2dq(x: f32) -> i32 {
    // 2^31 is exactly representable; every f32 below it rounds to at most 2^31 - 128.
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x.round_ties_even() as i32
    }
}

/// Saturates to int16, as `packs_epi32` and `vpmaddubsw` do.
#[inline(always)]
pub fn sat16(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// Saturates to uint8, as `packus_epi16` does.
#[inline(always)]
pub fn sat_u8(v: i32) -> i32 {
    v.clamp(0, 255)
}

/// Saturates to int8, as `packs_epi16` does.
#[inline(always)]
pub fn sat_i8(v: i32) -> i32 {
    v.clamp(-128, 127)
}

/// The store sequence of x86 fp32 requantizers that produce uint8: `packs_epi32` (int32 to int16,
/// saturating), `adds_epi16` with the zero point (saturating), `packus_epi16` (int16 to uint8).
#[inline(always)]
pub fn pack_add_zero_point_u8(r: i32, zero_point: i32) -> i32 {
    sat_u8(sat16(sat16(r) + zero_point))
}

/// `n * 2^exp` as the nearest-ish `f64` (within an ulp; for display and diagnostics).
pub fn scaled_bigint_to_f64(n: &num_bigint::BigInt, exp: i64) -> f64 {
    use num_traits::ToPrimitive;
    let excess = n.bits() as i64 - 64;
    let (top, exp) = if excess > 0 {
        (n >> excess as usize, exp + excess)
    } else {
        (n.clone(), exp)
    };
    let mantissa = top.to_i128().expect("at most 64 significant bits") as f64;
    // Scale in two steps so that neither factor overflows or underflows prematurely.
    let half = (exp / 2) as i32;
    mantissa * 2f64.powi(half) * 2f64.powi(exp as i32 - half)
}

/// A finite `f64` as `mantissa * 2^exponent` exactly, with `|mantissa| < 2^53` (an `f32`
/// converts to `f64` exactly, so this takes `f32` values too).
#[inline]
pub fn f64_parts(x: f64) -> (i64, i64) {
    debug_assert!(x.is_finite());
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let fraction = (bits & ((1u64 << 52) - 1)) as i64;
    let (m, e) = if exp_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1i64 << 52), exp_bits - 1075)
    };
    (if x.is_sign_negative() { -m } else { m }, e)
}

/// An exact dyadic rational `mantissa * 2^exponent`: every float and integer is one, and so are
/// their sums and products. Used where a model must compare engine arithmetic with the exact
/// value (explanations, boundary analysis), never on a hot path.
#[derive(Clone, Debug, PartialEq)]
pub struct Dyadic {
    pub mantissa: num_bigint::BigInt,
    pub exponent: i64,
}

impl Dyadic {
    /// Zero.
    pub fn zero() -> Self {
        Dyadic {
            mantissa: num_bigint::BigInt::from(0),
            exponent: 0,
        }
    }

    /// The exact value of a finite `f64` (an `f32` converts to `f64` exactly).
    pub fn from_f64(x: f64) -> Self {
        let (m, e) = f64_parts(x);
        Dyadic {
            mantissa: num_bigint::BigInt::from(m),
            exponent: e,
        }
    }

    /// An integer.
    pub fn from_int(v: i64) -> Self {
        Dyadic {
            mantissa: num_bigint::BigInt::from(v),
            exponent: 0,
        }
    }

    /// The exact sum.
    pub fn add(&self, other: &Dyadic) -> Dyadic {
        let e = self.exponent.min(other.exponent);
        let a = &self.mantissa << (self.exponent - e) as usize;
        let b = &other.mantissa << (other.exponent - e) as usize;
        Dyadic {
            mantissa: a + b,
            exponent: e,
        }
    }

    /// The exact product.
    pub fn mul(&self, other: &Dyadic) -> Dyadic {
        Dyadic {
            mantissa: &self.mantissa * &other.mantissa,
            exponent: self.exponent + other.exponent,
        }
    }

    /// The value as the nearest-ish `f64` (for display).
    pub fn to_f64(&self) -> f64 {
        scaled_bigint_to_f64(&self.mantissa, self.exponent)
    }

    /// `self / divisor` rounded to the nearest integer, ties to even, exactly. `divisor` must be
    /// positive.
    pub fn div_round_half_even(&self, divisor: &Dyadic) -> num_bigint::BigInt {
        use num_integer::Integer;
        // self / divisor = (m1 * 2^e1) / (m2 * 2^e2): shift whichever side has the lower exponent.
        let shift = self.exponent - divisor.exponent;
        let (num, den) = if shift >= 0 {
            (&self.mantissa << shift as usize, divisor.mantissa.clone())
        } else {
            (
                self.mantissa.clone(),
                &divisor.mantissa << (-shift) as usize,
            )
        };
        debug_assert!(den > num_bigint::BigInt::from(0));
        let (q, r) = num.div_mod_floor(&den);
        let twice: num_bigint::BigInt = r << 1usize;
        if twice > den || (twice == den && q.is_odd()) {
            q + 1
        } else {
            q
        }
    }
}

/// The exact sum of many dyadic terms `m * 2^e` (`m` up to 126 bits), computed in 128-bit
/// integers when the terms' exponents are close enough, else in arbitrary precision.
#[derive(Clone, Debug, Default)]
pub struct ExactSum {
    terms: Vec<(i128, i64)>,
}

impl ExactSum {
    /// An empty sum.
    pub fn new() -> Self {
        ExactSum::default()
    }

    /// An empty sum with room for `terms` terms.
    pub fn with_capacity(terms: usize) -> Self {
        ExactSum {
            terms: Vec::with_capacity(terms),
        }
    }

    /// Adds `mantissa * 2^exponent`.
    pub fn add_term(&mut self, mantissa: i128, exponent: i64) {
        if mantissa != 0 {
            self.terms.push((mantissa, exponent));
        }
    }

    /// Adds a finite `f64` exactly.
    pub fn add_f64(&mut self, x: f64) {
        let (m, e) = f64_parts(x);
        self.add_term(m as i128, e);
    }

    /// Adds the exact product of two finite `f64` values.
    pub fn add_product(&mut self, a: f64, b: f64) {
        let ((ma, ea), (mb, eb)) = (f64_parts(a), f64_parts(b));
        self.add_term(ma as i128 * mb as i128, ea + eb);
    }

    /// The exact sum.
    pub fn total(&self) -> Dyadic {
        let Some(min_exp) = self.terms.iter().map(|&(_, e)| e).min() else {
            return Dyadic::zero();
        };
        let mut acc: Option<i128> = Some(0);
        for &(m, e) in &self.terms {
            let shift = (e - min_exp) as u32;
            acc = acc.and_then(|a| {
                let bits = 128 - m.unsigned_abs().leading_zeros();
                if shift + bits >= 126 {
                    return None;
                }
                a.checked_add(m << shift)
            });
            if acc.is_none() {
                break;
            }
        }
        if let Some(a) = acc {
            return Dyadic {
                mantissa: num_bigint::BigInt::from(a),
                exponent: min_exp,
            };
        }
        let mut total = num_bigint::BigInt::from(0);
        for &(m, e) in &self.terms {
            total += num_bigint::BigInt::from(m) << (e - min_exp) as usize;
        }
        Dyadic {
            mantissa: total,
            exponent: min_exp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sums_agree_with_dyadic_arithmetic() {
        let values = [0.1, -3.5e10, 1e-30, 7.25, -0.1, 3.5e10, 2.0f64.powi(-1000)];
        let mut fast = ExactSum::new();
        let mut slow = Dyadic::zero();
        for (i, &v) in values.iter().enumerate() {
            let w = values[(i + 3) % values.len()];
            fast.add_product(v, w);
            fast.add_f64(v);
            slow = slow
                .add(&Dyadic::from_f64(v).mul(&Dyadic::from_f64(w)))
                .add(&Dyadic::from_f64(v));
        }
        let (a, b) = (fast.total(), slow);
        // Equal values, possibly different representations: compare a - b == 0.
        let diff = a.add(&Dyadic {
            mantissa: -b.mantissa,
            exponent: b.exponent,
        });
        assert_eq!(diff.mantissa, num_bigint::BigInt::from(0));
    }

    #[test]
    fn dyadic_arithmetic_is_exact() {
        let a = Dyadic::from_f64(0.1);
        let b = Dyadic::from_f64(0.2);
        let sum = a.add(&b);
        // 0.1 + 0.2 in doubles is not 0.3, but the exact sum is neither.
        assert_ne!(sum, Dyadic::from_f64(0.3));
        assert!((sum.to_f64() - 0.3).abs() < 1e-16);
        let x = Dyadic::from_int(5).mul(&Dyadic::from_f64(0.5)); // 2.5
        assert_eq!(x.div_round_half_even(&Dyadic::from_int(1)), 2.into());
        let x = Dyadic::from_int(7).mul(&Dyadic::from_f64(0.5)); // 3.5
        assert_eq!(x.div_round_half_even(&Dyadic::from_int(1)), 4.into());
        assert_eq!(
            Dyadic::from_int(-7).div_round_half_even(&Dyadic::from_int(2)),
            (-4).into()
        );
        assert_eq!(
            Dyadic::from_int(-5).div_round_half_even(&Dyadic::from_int(2)),
            (-2).into()
        );
        assert_eq!(
            Dyadic::from_int(10).div_round_half_even(&Dyadic::from_f64(3.0)),
            3.into()
        );
    }

    #[test]
    fn scaled_bigint_conversion() {
        let n = num_bigint::BigInt::from(3) << 2000usize;
        assert_eq!(scaled_bigint_to_f64(&n, -2001), 1.5);
        assert_eq!(
            scaled_bigint_to_f64(&num_bigint::BigInt::from(-5), -1),
            -2.5
        );
    }

    #[test]
    fn cvtps2dq_rounds_ties_to_even_and_returns_indefinite_out_of_range() {
        assert_eq!(cvtps2dq(0.5), 0);
        assert_eq!(cvtps2dq(1.5), 2);
        assert_eq!(cvtps2dq(2.5), 2);
        assert_eq!(cvtps2dq(-0.5), 0);
        assert_eq!(cvtps2dq(-1.5), -2);
        assert_eq!(cvtps2dq(-2.5), -2);
        assert_eq!(cvtps2dq(2_147_483_520.0), 2_147_483_520);
        assert_eq!(cvtps2dq(2_147_483_648.0), i32::MIN);
        assert_eq!(cvtps2dq(-2_147_483_648.0), i32::MIN);
        assert_eq!(cvtps2dq(f32::NAN), i32::MIN);
        assert_eq!(cvtps2dq(f32::INFINITY), i32::MIN);
        assert_eq!(cvtps2dq(f32::NEG_INFINITY), i32::MIN);
    }

    #[test]
    fn pack_chain_saturates_at_each_step() {
        assert_eq!(pack_add_zero_point_u8(7, 0), 7);
        assert_eq!(pack_add_zero_point_u8(-3, 10), 7);
        assert_eq!(pack_add_zero_point_u8(300, 0), 255);
        assert_eq!(pack_add_zero_point_u8(-300, 0), 0);
        // int16 saturation before the zero point is added: 40000 -> 32767, + (-32768) -> -1 -> 0
        assert_eq!(pack_add_zero_point_u8(40000, -32768), 0);
        assert_eq!(pack_add_zero_point_u8(i32::MIN, 100), 0);
    }
}

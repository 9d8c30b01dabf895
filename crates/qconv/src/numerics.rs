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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Affine quantization parameters, their validation, and PyTorch's quantize / dequantize.
//!
//! A quantized value `q` stands for the real number `scale * (q - zero_point)`. Scales are kept
//! as the `f64` values they were given; every engine model converts them to the precision its
//! engine uses at the point where the engine does.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::numerics::cvtps2dq;

/// Checks that a scale is usable: finite and strictly positive.
pub fn check_scale(field: &str, scale: f64) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("scale must be finite and > 0, got {scale}"),
        ))
    }
}

/// Checks that a zero point is representable in `dtype`.
pub fn check_zero_point(field: &str, zero_point: i64, dtype: DType) -> Result<()> {
    if dtype.contains(zero_point) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "zero point {zero_point} is outside {} [{}, {}]",
                dtype.name(),
                dtype.min(),
                dtype.max()
            ),
        ))
    }
}

/// Quantization parameters of a weight tensor: one (scale, zero point) for the whole tensor, or
/// one per output channel (axis 0 of OIHW).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightQuant {
    /// Scales, one per tensor or one per output channel. `None` for operators that take no
    /// weight scale (ONNX ConvInteger).
    pub scales: Option<Vec<f64>>,
    /// Zero points, as many as there are scales (or 1 / OC without scales).
    pub zero_points: Vec<i32>,
    /// `true` when the parameters are per output channel, even if there is only one channel:
    /// engines take different code paths for the two schemes.
    pub per_channel: bool,
}

impl WeightQuant {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f64, zero_point: i32) -> Self {
        WeightQuant {
            scales: Some(vec![scale]),
            zero_points: vec![zero_point],
            per_channel: false,
        }
    }

    /// Per-output-channel parameters.
    pub fn per_channel(scales: Vec<f64>, zero_points: Vec<i32>) -> Self {
        WeightQuant {
            scales: Some(scales),
            zero_points,
            per_channel: true,
        }
    }

    /// Validates the parameters for a weight of `dtype` with `out_channels` output channels.
    pub fn validate(&self, dtype: DType, out_channels: usize) -> Result<()> {
        let expected = if self.per_channel { out_channels } else { 1 };
        let what = if self.per_channel {
            format!("{out_channels} (one per output channel)")
        } else {
            "1 (per-tensor)".to_string()
        };
        if let Some(scales) = &self.scales {
            if scales.len() != expected {
                return Err(Error::invalid(
                    "scale",
                    format!("has {} values, expected {what}", scales.len()),
                ));
            }
            for (i, &s) in scales.iter().enumerate() {
                check_scale(&format!("scale[{i}]"), s)?;
            }
        }
        if self.zero_points.len() != expected {
            return Err(Error::invalid(
                "zero_point",
                format!("has {} values, expected {what}", self.zero_points.len()),
            ));
        }
        for (i, &z) in self.zero_points.iter().enumerate() {
            check_zero_point(&format!("zero_point[{i}]"), z as i64, dtype)?;
        }
        Ok(())
    }

    /// The scale that applies to output channel `oc`. Panics without scales (validated layers
    /// given to engines that need scales always have them).
    pub fn scale(&self, oc: usize) -> f64 {
        let scales = self.scales.as_ref().expect("weight scales");
        scales[if self.per_channel { oc } else { 0 }]
    }

    /// The zero point that applies to output channel `oc`.
    pub fn zero_point(&self, oc: usize) -> i32 {
        self.zero_points[if self.per_channel { oc } else { 0 }]
    }

    /// Whether every zero point is 0 (symmetric quantization).
    pub fn is_symmetric(&self) -> bool {
        self.zero_points.iter().all(|&z| z == 0)
    }
}

/// PyTorch's quantize and dequantize, as they compute on x86 (the FBGEMM build).
pub mod pytorch {
    use super::*;

    /// `torch.quantize_per_tensor` / `quantize_per_channel` element rounding for 8-bit types:
    /// the double scale becomes `f32`, its reciprocal is taken once in `f32`, the value is
    /// *multiplied* by it, rounded to nearest even, and the zero point is added after rounding.
    /// Reproduces FBGEMM's AVX2 kernel including its guards: the product is capped at
    /// 2147483520 before conversion (a NaN becomes that cap), conversion of values below the
    /// int32 range gives `i32::MIN`, the zero point is added with int32 wrap-around, and the
    /// result is clamped to the type.
    pub fn quantize_8bit(x: f32, scale: f64, zero_point: i32, dtype: DType) -> i32 {
        let r = rounded_8bit(x, scale).wrapping_add(zero_point);
        r.clamp(dtype.min() as i32, dtype.max() as i32)
    }

    /// The rounding step of [`quantize_8bit`]: `cvtps2dq(min(x * f32(1 / f32(scale)), cap))`,
    /// before the zero point and the clamp.
    pub fn rounded_8bit(x: f32, scale: f64) -> i32 {
        let inv = 1.0f32 / (scale as f32);
        let t = x * inv;
        // _mm256_min_ps(t, cap) returns the second operand when either is NaN.
        let cap = 2_147_483_520.0f32;
        let t = if t < cap { t } else { cap };
        cvtps2dq(t)
    }

    /// FBGEMM's scalar `Quantize<int32_t>` (used for qint32, e.g. bias quantization): the same
    /// reciprocal-multiply-round, then the zero point added *in float*, then a clamp through
    /// double to the int32 range.
    pub fn quantize_int32(x: f32, scale: f64, zero_point: i32) -> i32 {
        let inv = 1.0f32 / (scale as f32);
        let transformed = zero_point as f32 + (x * inv).round_ties_even();
        if transformed.is_nan() {
            // Undefined in C++; PyTorch rejects NaN bias upstream of this in practice.
            return 0;
        }
        (transformed as f64).clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }

    /// Per-tensor dequantize: `f32(scale) * f32(q - zero_point)`, one float multiply.
    pub fn dequantize_per_tensor(q: i32, scale: f64, zero_point: i32) -> f32 {
        (scale as f32) * ((q - zero_point) as f32)
    }

    /// Per-channel dequantize: the difference is multiplied by the double scale in double and
    /// rounded to float once.
    pub fn dequantize_per_channel(q: i32, scale: f64, zero_point: i32) -> f32 {
        (((q as f32) - (zero_point as f32)) as f64 * scale) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::pytorch::*;
    use super::*;

    #[test]
    fn pytorch_quantize_multiplies_by_the_reciprocal() {
        // FBGEMM's own example: dividing gives 127.499992, multiplying by 1/scale gives 127.5.
        assert_eq!(
            quantize_8bit(0.273_939_937_f64 as f32, 0.002_148_548_61, 0, DType::Uint8),
            128
        );
    }

    #[test]
    fn pytorch_quantize_rounds_ties_to_even_before_adding_the_zero_point() {
        let q: Vec<i32> = [0.25f32, 0.75, 1.25, -0.25, -0.75, -1.25]
            .iter()
            .map(|&x| quantize_8bit(x, 0.5, 10, DType::Uint8))
            .collect();
        assert_eq!(q, vec![10, 12, 12, 10, 8, 8]);
    }

    #[test]
    fn pytorch_quantize_saturates() {
        assert_eq!(quantize_8bit(1e30, 0.1, 0, DType::Uint8), 255);
        assert_eq!(quantize_8bit(-1e30, 0.1, 0, DType::Uint8), 0);
        assert_eq!(quantize_8bit(f32::INFINITY, 0.1, 0, DType::Int8), 127);
        assert_eq!(quantize_8bit(f32::NEG_INFINITY, 0.1, 0, DType::Int8), -128);
        assert_eq!(quantize_int32(2.5e9, 0.5, 0), i32::MAX);
        assert_eq!(quantize_int32(-2.5e9, 0.5, 0), i32::MIN);
    }

    #[test]
    fn dequantize_per_tensor_and_per_channel_differ_in_the_last_bit() {
        let t = dequantize_per_tensor(-124, 0.1, 0);
        let c = dequantize_per_channel(-124, 0.1, 0);
        assert_ne!(t, c);
        assert!((t as f64 + 12.4).abs() < 1e-5 && (c as f64 + 12.4).abs() < 1e-5);
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(check_scale("s", 0.0).is_err());
        assert!(check_scale("s", -1.0).is_err());
        assert!(check_scale("s", f64::NAN).is_err());
        assert!(check_scale("s", f64::INFINITY).is_err());
        assert!(check_scale("s", 1e-30).is_ok());
        assert!(check_zero_point("z", 256, DType::Uint8).is_err());
        assert!(check_zero_point("z", -129, DType::Int8).is_err());
        let q = WeightQuant::per_channel(vec![0.1, 0.2], vec![0, 0]);
        let err = q.validate(DType::Int8, 3).unwrap_err().to_string();
        assert!(err.contains("expected 3"), "{err}");
    }
}

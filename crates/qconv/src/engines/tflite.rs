//! The TFLite interpreter's default kernels (`tf.lite.Interpreter` as it comes): the XNNPACK
//! delegate takes every int8 CONV_2D and DEPTHWISE_CONV_2D qconv can describe.
//!
//! Accumulation is exact int32 (XNNPACK widens both operands before multiplying, and folds the
//! input zero point into the packed bias; padded taps read the input zero point). Requantization
//! is XNNPACK's float32 scheme: per output channel the multiplier
//! `f32(f32(s_in * s_w[oc]) / s_out)`, refused (the interpreter fails to prepare) when it is not
//! below 256; `f32(acc + bias) * multiplier`, clamped in float to `[min - zp, max - zp]`, rounded
//! to nearest even, plus the zero point. The clamp bounds are XNNPACK's quantization of the fused
//! activation's real bounds: `round_even(clamp(f32(bound / s_out) + zp, -128, 127))`. See
//! `docs/numerics/tflite.md`.

use super::tflite_reference::{self, activation, check_layer};
use super::{Accumulators, EngineKind, EngineOutput, RunOptions};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Padding;
use crate::layer::{ConvLayer, PaddingMode};
use crate::requant::{Fp32Requantizer, Fp32Store, requantize_all};

/// XNNPACK's `xnn_qs8_quantize`: `lrintf(clamp(value / scale + zp, -128, 127))`.
fn qs8_quantize(value: f32, scale: f32, zero_point: i32) -> i32 {
    let v = value / scale + zero_point as f32;
    // fmaxf / fminf: infinities clamp; NaN cannot arise from the finite or infinite bounds here.
    let v = v.clamp(-128.0, 127.0);
    v.round_ties_even() as i32
}

/// The output range XNNPACK clamps to for `layer`'s activation.
pub fn output_range(layer: &ConvLayer, output_scale: f32) -> (i32, i32) {
    if layer.activation.is_none() && !layer.relu && layer.output.clamp.is_some() {
        // A layer without a named activation but with an explicit quantized clamp.
        return layer.output_range();
    }
    let zp = layer.output.zero_point;
    let (lo, hi) = activation(layer).real_bounds();
    (
        qs8_quantize(lo.unwrap_or(f32::NEG_INFINITY), output_scale, zp),
        qs8_quantize(hi.unwrap_or(f32::INFINITY), output_scale, zp),
    )
}

/// XNNPACK's requantizer for `layer`, or the interpreter's refusal.
pub fn requantizer(layer: &ConvLayer) -> Result<Fp32Requantizer> {
    let engine = EngineKind::Tflite;
    let s = check_layer(engine, layer)?;
    let oc_len = layer.geometry.out_channels;
    let mut multipliers = Vec::with_capacity(oc_len);
    for oc in 0..oc_len {
        let ws = layer.weight.quant.scale(oc) as f32;
        let m = s.input * ws / s.output;
        if m >= 256.0 || m.is_nan() {
            return Err(Error::refused(
                engine.name(),
                format!(
                    "XNNPACK refuses requantization scale {m:e} of output channel {oc} (it must be below 256); \
                     the interpreter fails to prepare (\"failed to create XNNPACK runtime\")"
                ),
            ));
        }
        multipliers.push(m);
    }
    Ok(Fp32Requantizer {
        multipliers,
        bias: layer.int32_bias(),
        zero_point: layer.output.zero_point,
        dtype: DType::Int8,
        range: output_range(layer, s.output),
        store: Fp32Store::FloatClamp,
    })
}

/// The layer's padding mode: the one its source names, else SAME when it pads and VALID when
/// it does not (TFLite has no other padding).
pub fn padding_mode(layer: &ConvLayer) -> PaddingMode {
    layer
        .padding_mode
        .unwrap_or(if layer.geometry.padding == Padding::default() {
            PaddingMode::Valid
        } else {
            PaddingMode::Same
        })
}

/// A SAME-padded dimension whose TensorFlow padding total is negative, which the XNNPACK of
/// TFLite 2.21 computes in unsigned arithmetic (fixed in XNNPACK after that release): the
/// dimension's name and the negative total. XNNPACK keeps TensorFlow SAME padding for itself only
/// when a stride is above 1 and the kernel has more than one tap; the wrapped-around padding then
/// puts every tap of every output outside the image, and each output is its bias alone.
pub fn same_padding_underflow(layer: &ConvLayer) -> Option<(&'static str, i64)> {
    let g = &layer.geometry;
    if padding_mode(layer) != PaddingMode::Same
        || g.stride == [1, 1]
        || g.kernel[0] * g.kernel[1] == 1
    {
        return None;
    }
    let dims = [
        ("height", g.in_h, g.out_h(), 0),
        ("width", g.in_w, g.out_w(), 1),
    ];
    dims.into_iter().find_map(|(name, input, output, d)| {
        let effective = (g.kernel[d] - 1) * g.dilation[d] + 1;
        let total = ((output - 1) * g.stride[d] + effective) as i64 - input as i64;
        (total < 0).then_some((name, total))
    })
}

/// Runs the interpreter-default (XNNPACK) model.
pub fn run(layer: &ConvLayer, options: &RunOptions) -> Result<EngineOutput> {
    let r = requantizer(layer)?;
    let g = &layer.geometry;
    let plane = g.out_h() * g.out_w();
    let base = "XNNPACK delegate: exact int32, fp32 requantization (ties to even), float clamp";
    if let Some((dim, total)) = same_padding_underflow(layer) {
        let acc = vec![0i32; layer.output_len()];
        let values = requantize_all(&r, &acc, g.out_channels, plane);
        return Ok(EngineOutput {
            engine: EngineKind::Tflite,
            isa: None,
            path: format!(
                "{base}; SAME padding total {total} in {dim} wraps around: every tap reads the padding"
            ),
            dtype: DType::Int8,
            shape: g.output_shape(),
            values,
            accumulators: Accumulators::Int32(acc),
            warnings: vec![format!(
                "TFLite 2.21's XNNPACK computes this layer wrongly: its SAME padding total in \
                 {dim} is {total}, which XNNPACK computes in unsigned arithmetic; every output is \
                 its bias alone (fixed in later XNNPACK)"
            )],
        });
    }
    let (acc, width) = tflite_reference::accumulators(layer, options)?;
    let values = requantize_all(&r, &acc, g.out_channels, plane);
    Ok(EngineOutput {
        engine: EngineKind::Tflite,
        isa: None,
        path: tflite_reference::route(base, width),
        dtype: DType::Int8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xnnpack_quantize_rounds_half_to_even_after_adding_the_zero_point() {
        assert_eq!(qs8_quantize(f32::INFINITY, 0.1, 5), 127);
        assert_eq!(qs8_quantize(f32::NEG_INFINITY, 0.1, 5), -128);
        assert_eq!(qs8_quantize(0.0, 0.1, -3), -3);
        // 6 / 4 = 1.5, + 0 -> 2 (even); + 1 -> 2.5 -> 2.
        assert_eq!(qs8_quantize(6.0, 4.0, 0), 2);
        assert_eq!(qs8_quantize(6.0, 4.0, 1), 2);
    }
}

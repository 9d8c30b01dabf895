//! TFLite's reference int8 kernels (`reference_integer_ops::ConvPerChannel` and
//! `DepthwiseConvPerChannel`, the `BUILTIN_REF` op resolver).
//!
//! Accumulation is exact int32: `sum w * (x - x_zp)` over the taps inside the image (taps in the
//! padding are skipped, which equals padding with the input zero point), plus the int32 bias.
//! Requantization is fixed point: per output channel the real multiplier
//! `f64(s_in) * f64(s_w[oc]) / f64(s_out)` (float32 scales widened to double) is split by
//! `QuantizeMultiplier` into a Q31 multiplier and a shift, and `MultiplyByQuantizedMultiplier`
//! applies them with two roundings, a rounding high multiply and a rounding shift (or, in builds with
//! `TFLITE_SINGLE_ROUNDING`, one rounding half up). Then the output zero point, and the clamp to
//! the fused activation's range, computed as `zp + round_half_away(bound / s_out)` in float32.
//! See `docs/numerics/tflite-reference.md`.

use super::narrow::{self, AccumulatorWidth};
use super::{Accumulators, EngineKind, EngineOutput, RunOptions};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layer::{Activation, Bias, ConvLayer};
use crate::requant::{
    FixedPointRequantizer, FixedPointRounding, quantize_multiplier, requantize_all,
};

/// The scales of a layer TFLite accepts, as the float32 values TFLite stores.
#[derive(Clone, Copy, Debug)]
pub(super) struct TfliteScales {
    pub input: f32,
    pub output: f32,
}

/// Checks what TFLite's int8 conv kernels accept (both kernel sets): int8 input, weight and
/// output, symmetric weights (zero point 0), an int32 bias or none.
pub(super) fn check_layer(engine: EngineKind, layer: &ConvLayer) -> Result<TfliteScales> {
    let name = engine.name();
    let refuse = |reason: String| Err(Error::refused(name, reason));
    let scales = layer.scales(name)?;
    if layer.input.dtype != DType::Int8
        || layer.weight.dtype != DType::Int8
        || layer.output.dtype != DType::Int8
    {
        return refuse(format!(
            "the TFLite int8 conv kernels take int8 input, weight and output; this layer has {} input, {} weight and {} output",
            layer.input.dtype, layer.weight.dtype, layer.output.dtype
        ));
    }
    let oc_len = layer.geometry.out_channels;
    if let Some(oc) = (0..oc_len).find(|&oc| layer.weight.quant.zero_point(oc) != 0) {
        return refuse(format!(
            "TFLite int8 filters are symmetric (zero point 0); output channel {oc} has zero point {}",
            layer.weight.quant.zero_point(oc)
        ));
    }
    if let Some(Bias::Float32(_)) = layer.bias {
        return refuse(
            "TFLite takes an int32 bias (quantized with scale input.scale * weight.scale[oc]); this layer's bias is float32"
                .to_string(),
        );
    }
    Ok(TfliteScales {
        input: scales.input as f32,
        output: scales.output as f32,
    })
}

/// The layer's fused activation: the TFLite activation it names, else ReLU when the layer says
/// `relu`, else none.
pub(super) fn activation(layer: &ConvLayer) -> Activation {
    match layer.activation {
        Some(a) => a,
        None if layer.relu => Activation::Relu,
        None => Activation::None,
    }
}

/// TFLite's `CalculateActivationRangeQuantized`: each finite bound quantized as
/// `zp + round_half_away(f32(bound / s_out))`, intersected with the output range; when the layer
/// names no activation but gives an explicit clamp, that clamp.
pub fn activation_range(layer: &ConvLayer, output_scale: f32) -> (i32, i32) {
    let zp = layer.output.zero_point;
    let quantize = |v: f32| zp.saturating_add((v / output_scale).round() as i32);
    let (lo, hi) = (
        layer.output.dtype.min() as i32,
        layer.output.dtype.max() as i32,
    );
    match (layer.activation, layer.output.clamp) {
        (None, Some(_)) => layer.output_range(),
        _ => {
            let (l, h) = activation(layer).real_bounds();
            (
                l.map_or(lo, |v| lo.max(quantize(v))),
                h.map_or(hi, |v| hi.min(quantize(v))),
            )
        }
    }
}

/// The reference kernels' requantizer.
pub fn requantizer(
    layer: &ConvLayer,
    rounding: FixedPointRounding,
) -> Result<FixedPointRequantizer> {
    let engine = match rounding {
        FixedPointRounding::Double => EngineKind::TfliteReference,
        FixedPointRounding::Single => EngineKind::TfliteReferenceSingleRounding,
    };
    let s = check_layer(engine, layer)?;
    let oc_len = layer.geometry.out_channels;
    let (multipliers, shifts) = (0..oc_len)
        .map(|oc| {
            let ws = layer.weight.quant.scale(oc) as f32;
            quantize_multiplier(s.input as f64 * ws as f64 / s.output as f64, rounding)
        })
        .unzip();
    Ok(FixedPointRequantizer {
        multipliers,
        shifts,
        bias: layer.int32_bias(),
        zero_point: layer.output.zero_point,
        range: activation_range(layer, s.output),
        rounding,
    })
}

/// The int32 accumulators (no bias) of a TFLite engine: exact (wrapping int32; the fast kernels
/// when the sums fit), or those of a narrow accumulator when `options.accumulator` asks for one.
pub(super) fn accumulators(
    layer: &ConvLayer,
    options: &RunOptions,
) -> Result<(Vec<i32>, Option<AccumulatorWidth>)> {
    match options.accumulator {
        Some(w) => Ok((narrow::accumulators_without_bias(layer, w), Some(w))),
        None => Ok((super::exact::int32_accumulators(layer, options)?, None)),
    }
}

/// The route text, with the accumulator width when one is modelled.
pub(super) fn route(base: &str, width: Option<AccumulatorWidth>) -> String {
    match width {
        Some(w) => format!("{base}; {w}"),
        None => base.to_string(),
    }
}

/// Runs the reference-kernel model with `rounding`.
pub fn run(
    layer: &ConvLayer,
    options: &RunOptions,
    rounding: FixedPointRounding,
) -> Result<EngineOutput> {
    let r = requantizer(layer, rounding)?;
    let g = &layer.geometry;
    let (acc, width) = accumulators(layer, options)?;
    let values = requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w());
    let (engine, base) = match rounding {
        FixedPointRounding::Double => (
            EngineKind::TfliteReference,
            "reference kernels: exact int32, Q31 multiplier and shift, double rounding",
        ),
        FixedPointRounding::Single => (
            EngineKind::TfliteReferenceSingleRounding,
            "reference kernels (TFLITE_SINGLE_ROUNDING): exact int32, Q31 multiplier and shift, one rounding (half up)",
        ),
    };
    Ok(EngineOutput {
        engine,
        isa: None,
        path: route(base, width),
        dtype: DType::Int8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

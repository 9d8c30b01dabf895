//! The ONNX operator specification as the ONNX reference evaluator computes it (`onnx.reference`,
//! onnx 1.23): QLinearConv and ConvInteger.
//!
//! Accumulation is exact integer arithmetic in int32 (`(x - x_zp)` and `(w - w_zp)` as int32,
//! an int32 matrix product, plus the int32 bias; all wrap modulo 2^32). QLinearConv requantizes
//! with the float32 multiplier `f32(f32(x_scale * w_scale[oc]) / y_scale)`, multiplied by the
//! accumulator in float64, plus the output zero point in float64, clipped to the output type and
//! rounded half to even. ConvInteger returns the int32 accumulator. See `docs/numerics/onnx.md`.

use super::{Accumulators, EngineKind, EngineOutput, RunOptions};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layer::{Bias, ConvLayer};
use crate::requant::{Float64ProductRequantizer, requantize_all};

/// Checks what the ONNX operators accept: no float bias, no fused activation.
pub(super) fn check_onnx_layer(engine: &str, layer: &ConvLayer) -> Result<()> {
    let refuse = |reason: &str| Err(Error::refused(engine, reason));
    if let Some(Bias::Float32(_)) = layer.bias {
        return refuse(
            "ONNX QLinearConv takes an int32 bias (quantized with scale x_scale * w_scale); this layer's bias is float32",
        );
    }
    if layer.relu || layer.output.clamp.is_some() {
        return refuse("ONNX QLinearConv has no fused activation; this layer has one");
    }
    if layer.is_integer_output() && layer.bias.is_some() {
        return refuse("ONNX ConvInteger takes no bias");
    }
    Ok(())
}

/// QLinearConv's requantization multiplier per output channel, `(x_scale * w_scale) / y_scale`
/// in float32 (the ONNX reference evaluator and ONNX Runtime form it alike).
pub(super) fn qlinear_multipliers(
    layer: &ConvLayer,
    input_scale: f64,
    output_scale: f64,
) -> Vec<f32> {
    let (xs, ys) = (input_scale as f32, output_scale as f32);
    (0..layer.geometry.out_channels)
        .map(|oc| (xs * layer.weight.quant.scale(oc) as f32) / ys)
        .collect()
}

/// The ONNX reference requantizer of a QLinearConv layer.
pub fn requantizer(
    layer: &ConvLayer,
    input_scale: f64,
    output_scale: f64,
) -> Float64ProductRequantizer {
    Float64ProductRequantizer {
        multipliers: qlinear_multipliers(layer, input_scale, output_scale),
        bias: layer.int32_bias(),
        zero_point: layer.output.zero_point,
        range: (
            layer.output.dtype.min() as i32,
            layer.output.dtype.max() as i32,
        ),
    }
}

/// Runs the ONNX reference model.
pub fn run(layer: &ConvLayer, options: &RunOptions) -> Result<EngineOutput> {
    let engine = EngineKind::Onnx;
    check_onnx_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    // Exact integer products and sums, wrapped to int32 as NumPy's int32 matmul does.
    let acc = super::exact::int32_accumulators(layer, options)?;
    let (values, dtype, path) = if layer.is_integer_output() {
        (
            acc.clone(),
            DType::Int32,
            "ConvInteger: exact int32 (wrapping)",
        )
    } else {
        let scales = layer.scales(engine.name())?;
        let r = requantizer(layer, scales.input, scales.output);
        (
            requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w()),
            layer.output.dtype,
            "QLinearConv: exact int32, float64 product with the float32 multiplier, round half to even",
        )
    };
    Ok(EngineOutput {
        engine,
        isa: None,
        path: path.to_string(),
        dtype,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

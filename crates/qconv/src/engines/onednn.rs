//! oneDNN's int8 convolution as PyTorch's `x86` engine calls it on AVX-512-VNNI CPUs (symmetric
//! weights only), through ideep, with oneDNN 3.x's brgemm kernels.
//!
//! Accumulation is exact int32 (`vpdpbusd`); padded taps contribute nothing. Post-processing is
//! float32 with no fused operations, in this order: times the source scale, times the weight
//! scale (two multiplies), plus the float bias, ReLU, times the reciprocal of the output scale,
//! plus the output zero point (in float, before rounding), clamp to [0, 255], round to nearest
//! even. PyTorch hands oneDNN reciprocals of the scales and ideep inverts them back, so the source
//! scale and the output reciprocal pass through float round trips.
use super::pytorch::{check_layer, float_bias};
use super::{Accumulators, EngineKind, EngineOutput, RunOptions};
use crate::dtype::DType;
use crate::error::Result;
use crate::isa::Isa;
use crate::layer::ConvLayer;
use crate::requant::{FloatPostOpsRequantizer, requantize_all};

/// The oneDNN requantizer of `layer`. PyTorch passes `1 / scale` (double division, stored as
/// float); ideep inverts the source and output values again in float; oneDNN takes the
/// reciprocal of the output scale once more.
pub fn requantizer(
    layer: &ConvLayer,
    input_scale: f64,
    output_scale: f64,
) -> FloatPostOpsRequantizer {
    let g = &layer.geometry;
    FloatPostOpsRequantizer {
        source_scale: 1.0f32 / ((1.0f64 / input_scale) as f32),
        weight_scales: (0..g.out_channels)
            .map(|oc| layer.weight.quant.scale(oc) as f32)
            .collect(),
        bias: float_bias(layer).map(<[f32]>::to_vec),
        relu: layer.relu,
        output_reciprocal: 1.0f32 / (1.0f32 / ((1.0f64 / output_scale) as f32)),
        zero_point: layer.output.zero_point,
        range: (0, 255),
    }
}

/// Runs the oneDNN model as engine `engine`.
pub(super) fn run_as(
    engine: EngineKind,
    layer: &ConvLayer,
    isa: Isa,
    options: &RunOptions,
) -> Result<EngineOutput> {
    let scales = check_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    let r = requantizer(layer, scales.input, scales.output);
    let acc = super::exact::int32_accumulators(layer, options)?;
    let values = requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w());
    Ok(EngineOutput {
        engine,
        isa: Some(isa),
        path: "oneDNN int8 convolution (exact int32, fp32 post-ops)".to_string(),
        dtype: DType::Uint8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

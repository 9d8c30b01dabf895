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
use super::{Accumulators, EngineKind, EngineOutput};
use crate::dtype::DType;
use crate::error::Result;
use crate::isa::Isa;
use crate::layer::ConvLayer;
use crate::numerics::cvtps2dq;

/// Runs the oneDNN model as engine `engine`.
pub(super) fn run_as(engine: EngineKind, layer: &ConvLayer, isa: Isa) -> Result<EngineOutput> {
    let scales = check_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    let quant = &layer.weight.quant;
    // PyTorch passes 1/scale (double division, stored as float); ideep inverts the source and
    // output values again in float; oneDNN takes the reciprocal of the output scale once more.
    let source_scale = 1.0f32 / ((1.0f64 / scales.input) as f32);
    let output_reciprocal = 1.0f32 / (1.0f32 / ((1.0f64 / scales.output) as f32));
    let weight_scales: Vec<f32> = (0..g.out_channels)
        .map(|oc| quant.scale(oc) as f32)
        .collect();
    let bias = float_bias(layer);
    let zp = layer.output.zero_point as f32;
    let plane = g.out_h() * g.out_w();
    let acc: Vec<i32> = super::exact::accumulators(layer)
        .into_iter()
        .map(|a| a as i32)
        .collect();
    let values = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let oc = i / plane % g.out_channels;
            let mut d = (a as f32 * source_scale) * weight_scales[oc];
            if let Some(b) = bias {
                d += b[oc];
            }
            if layer.relu {
                d = d.max(0.0);
            }
            let d = d * output_reciprocal + zp;
            // saturate_f32: clamp in float, then convert.
            let d = if d > 0.0 { d } else { 0.0 };
            let d = if d < 255.0 { d } else { 255.0 };
            cvtps2dq(d)
        })
        .collect();
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

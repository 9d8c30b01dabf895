//! oneDNN's int8 convolution as PyTorch's `x86` engine calls it on AVX-512-VNNI CPUs (symmetric
//! weights only).
//!
//! Accumulation is exact int32 (`vpdpbusd`, padded taps skipped). The post-processing runs in
//! float32: the accumulator times the precomputed `f32(s_in * s_w[oc])`, plus the float bias,
//! ReLU, times `f32(1 / s_out)`, plus the output zero point, then rounding to nearest even and
//! saturation to uint8.

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
    let (si, so) = (scales.input as f32, scales.output as f32);
    let combined: Vec<f32> = (0..g.out_channels)
        .map(|oc| si * quant.scale(oc) as f32)
        .collect();
    let inverse_output_scale = 1.0f32 / so;
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
            let mut d = a as f32 * combined[oc];
            if let Some(b) = bias {
                d += b[oc];
            }
            if layer.relu {
                d = d.max(0.0);
            }
            let d = d * inverse_output_scale + zp;
            let d = d.clamp(0.0, 255.0);
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
    })
}

//! The float path: what a PyTorch user gets by dequantizing input and weight, running a float32
//! convolution with the float bias, applying ReLU, and quantizing the result.
//!
//! Dequantization is PyTorch's (per-tensor: one float multiply; per-channel: a double multiply
//! rounded to float once). The convolution sums float32 products in float32; PyTorch's own
//! summation order (oneDNN's blocking) is not reproducible in general, so results may differ from
//! PyTorch's where the sum lies within float32 rounding error of a quantization boundary.
//! Quantization multiplies by the float reciprocal of the output scale and rounds ties to even.
//! See `docs/numerics/float-path.md`.

use super::pytorch::{check_layer, float_bias};
use super::{Accumulators, EngineKind, EngineOutput};
use crate::accumulate::{Accumulation, accumulate, pack_weight_rows};
use crate::dtype::DType;
use crate::error::Result;
use crate::layer::ConvLayer;
use crate::quant::pytorch::{dequantize_per_channel, dequantize_per_tensor, quantize_8bit};

/// The dequantized input (NCHW) and weight (OIHW) as PyTorch's `dequantize()` produces them.
pub fn dequantized(layer: &ConvLayer, input_scale: f64) -> (Vec<f32>, Vec<f32>) {
    let zp = layer.input.zero_point;
    let input = layer
        .input
        .data
        .iter()
        .map(|&q| dequantize_per_tensor(q, input_scale, zp))
        .collect();
    let quant = &layer.weight.quant;
    let per_oc = layer.weight.data.len() / layer.geometry.out_channels;
    let weight = layer
        .weight
        .data
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let oc = i / per_oc;
            if quant.per_channel {
                dequantize_per_channel(q, quant.scale(oc), quant.zero_point(oc))
            } else {
                dequantize_per_tensor(q, quant.scale(oc), quant.zero_point(oc))
            }
        })
        .collect();
    (input, weight)
}

/// Float32 convolution of dequantized values, one sequential float32 sum per output element,
/// the bias added last.
struct Float32Conv<'a> {
    bias: Option<&'a [f32]>,
}

impl Accumulation for Float32Conv<'_> {
    type Elem = f32;
    type Acc = f32;

    fn pad_value(&self) -> f32 {
        0.0
    }

    fn accumulate(&self, row: &[f32], weights: &[f32], oc: usize) -> f32 {
        let sum = row
            .iter()
            .zip(weights)
            .fold(0.0f32, |s, (&a, &w)| s + a * w);
        match self.bias {
            Some(b) => sum + b[oc],
            None => sum,
        }
    }
}

/// Runs the float path.
pub fn run(layer: &ConvLayer) -> Result<EngineOutput> {
    let scales = check_layer(EngineKind::FloatPath.name(), layer)?;
    let g = &layer.geometry;
    let (input, weight) = dequantized(layer, scales.input);
    let rows = pack_weight_rows(g, &weight);
    let conv = Float32Conv {
        bias: float_bias(layer),
    };
    let acc = accumulate(g, &input, &rows, &conv);
    let zp = layer.output.zero_point;
    let values = acc
        .iter()
        .map(|&v| {
            let v = if layer.relu { v.max(0.0) } else { v };
            quantize_8bit(v, scales.output, zp, DType::Uint8)
        })
        .collect();
    Ok(EngineOutput {
        engine: EngineKind::FloatPath,
        isa: None,
        path: "dequantize, float32 conv, quantize_per_tensor".to_string(),
        dtype: DType::Uint8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Float(acc),
    })
}

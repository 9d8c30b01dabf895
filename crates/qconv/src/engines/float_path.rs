//! The float path: what a PyTorch user gets by dequantizing input and weight, running a float32
//! convolution with the float bias, applying ReLU, and quantizing the result.
//!
//! Dequantization is PyTorch's (per-tensor: one float multiply; per-channel: a double multiply
//! rounded to float once). The convolution is a float32 fused multiply-add chain in tap-major
//! order (starting from the bias for depthwise-style convolutions, else adding it last). PyTorch's float convolution (oneDNN) blocks its loops by CPU and shape, so
//! no fixed order can be promised to match it everywhere: results may differ where the sum lies
//! within float32 rounding error of a quantization boundary ([`boundary_analysis`]).
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

/// Float32 convolution of dequantized values: per output element, a sequential chain of fused
/// multiply-adds over the taps in tap-major order (`k = (r * KW + s) * Cg + c`), starting from the
/// bias for convolutions with one input channel per group, else adding the bias last.
struct Float32Conv<'a> {
    bias: Option<&'a [f32]>,
    /// Whether the chain starts from the bias (one input channel per group) instead of adding it
    /// after the last tap.
    bias_first: bool,
}

impl Accumulation for Float32Conv<'_> {
    type Elem = f32;
    type Acc = f32;

    fn pad_value(&self) -> f32 {
        0.0
    }

    fn accumulate(&self, row: &[f32], weights: &[f32], oc: usize) -> f32 {
        // One fused multiply-add per tap, in tap-major order, as oneDNN's float convolution
        // accumulates on x86. Its depthwise kernels start from the bias; the others add it last.
        // (This reproduces PyTorch on every golden case; see docs/numerics/float-path.md.)
        if self.bias_first {
            let init = self.bias.map_or(0.0, |b| b[oc]);
            return row
                .iter()
                .zip(weights)
                .fold(init, |s, (&a, &w)| a.mul_add(w, s));
        }
        let sum = row
            .iter()
            .zip(weights)
            .fold(0.0f32, |s, (&a, &w)| a.mul_add(w, s));
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
        bias_first: g.group_in_channels() == 1,
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
        warnings: Vec::new(),
    })
}

/// Where one float-path output element lies relative to the quantizer's rounding boundaries,
/// and how far any float32 evaluation of its sum can stray. Used to show that a disagreement
/// with PyTorch's float path is a summation-order effect, not a modelling error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundaryAnalysis {
    /// The exact value of the conv output: the exact sum of the dequantized float32 products,
    /// plus the bias.
    pub exact: f64,
    /// `exact` in output steps (times the float reciprocal of the output scale, as PyTorch's
    /// quantizer multiplies), zero point not included.
    pub steps: f64,
    /// Distance from `steps` to the nearest rounding boundary `k + 0.5`, in output steps.
    pub boundary_distance: f64,
    /// Worst-case deviation, in output steps, of a float32 evaluation of the sum in any order
    /// (products rounded, then `K` additions and the bias), plus the rounding of the final
    /// multiply: `inv * gamma(K + 2) * (sum |products| + |bias|) + |steps| * 2^-23`.
    pub error_bound: f64,
}

impl BoundaryAnalysis {
    /// Whether float32 rounding alone can move this element across a rounding boundary.
    pub fn is_ambiguous(&self) -> bool {
        self.boundary_distance <= self.error_bound
    }
}

/// Analyses output element `index` (NCHW flat) of the float path on `layer`.
pub fn boundary_analysis(layer: &ConvLayer, index: usize) -> Result<BoundaryAnalysis> {
    use num_bigint::BigInt;
    let scales = check_layer(EngineKind::FloatPath.name(), layer)?;
    let g = &layer.geometry;
    let (input, weight) = dequantized(layer, scales.input);
    let [n, oc, oh, ow] = g.output_coords(index);
    let grp = oc / g.group_out_channels();
    let k_len = g.reduction_len();
    let mut row = vec![0.0f32; k_len];
    crate::accumulate::gather_row(g, &input, 0.0, [n, grp, oh, ow], &mut row);
    let rows = pack_weight_rows(g, &weight);
    let w = &rows[oc * k_len..(oc + 1) * k_len];
    // Every product of two float32 values is exact in f64; sum them exactly as integers scaled
    // by 2^-1100 (below the smallest product exponent).
    let mut terms: Vec<f64> = row
        .iter()
        .zip(w)
        .map(|(&a, &b)| a as f64 * b as f64)
        .collect();
    let bias = float_bias(layer).map_or(0.0, |b| b[oc] as f64);
    terms.push(bias);
    let sum_abs: f64 = terms.iter().map(|t| t.abs()).sum();
    let mut exact = BigInt::from(0);
    for t in &terms {
        if *t != 0.0 {
            let bits = t.to_bits();
            let exp = ((bits >> 52) & 0x7ff) as i64;
            let frac = (bits & ((1u64 << 52) - 1)) as i64;
            let (m, e) = if exp == 0 {
                (frac, -1074)
            } else {
                (frac | (1 << 52), exp - 1075)
            };
            let m = if t.is_sign_negative() { -m } else { m };
            exact += BigInt::from(m) << (e + 1100) as usize;
        }
    }
    let exact = crate::numerics::scaled_bigint_to_f64(&exact, -1100);
    let inv = (1.0f32 / scales.output as f32) as f64;
    let steps = exact * inv;
    let boundary_distance = ((steps - 0.5).round() + 0.5 - steps)
        .abs()
        .min((steps + 0.5).round() - 0.5 - steps)
        .abs();
    let u = 2f64.powi(-24);
    let nu = (k_len + 2) as f64 * u;
    let error_bound = inv * nu / (1.0 - nu) * sum_abs + steps.abs() * 2f64.powi(-23);
    Ok(BoundaryAnalysis {
        exact,
        steps,
        boundary_distance,
        error_bound,
    })
}

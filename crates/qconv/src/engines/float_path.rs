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
use crate::accumulate::{Accumulation, accumulate};
use crate::dtype::DType;
use crate::error::Result;
use crate::geometry::ReductionOrder;
use crate::layer::ConvLayer;
use crate::quant::pytorch::{
    dequantize_per_channel, dequantize_per_tensor, quantize_8bit, rounded_8bit,
};

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
    let conv = Float32Conv {
        bias: float_bias(layer),
        bias_first: g.group_in_channels() == 1,
    };
    let acc = accumulate(g, &input, &weight, &conv);
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

/// One float-path output element, step by step from the exact result to PyTorch's integer:
/// each `with_*` field is the unclamped output integer (zero point included) once one more of
/// the float path's roundings is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatPathElement {
    /// The float conv value the model computes (bias included, before ReLU).
    pub float_value: f32,
    /// Exact result with the weights dequantized to float32 (inputs and sum still exact).
    pub with_float_weights: i64,
    /// ... and the inputs dequantized to float32 too.
    pub with_float_inputs: i64,
    /// ... and the sum accumulated in float32 as the model does (`float_value`).
    pub with_float_sum: i64,
    /// ... and quantized as PyTorch does (multiply by `f32(1 / s_out)`): the float path's own
    /// unclamped integer.
    pub quantized: i64,
    pub boundary: BoundaryAnalysis,
}

/// Per-element analysis of the float path on one layer (the dequantized tensors are computed
/// once).
pub struct FloatPathAnalysis<'a> {
    layer: &'a ConvLayer,
    input_scale: f64,
    output_scale: f64,
    input: Vec<f32>,
    /// The dequantized weights packed in rows of the tap-major reduction order, one per output
    /// channel.
    weight_rows: Vec<f32>,
}

impl<'a> FloatPathAnalysis<'a> {
    /// Prepares the analysis; refuses what the float path refuses.
    pub fn new(layer: &'a ConvLayer) -> Result<Self> {
        let scales = check_layer(EngineKind::FloatPath.name(), layer)?;
        let (input, weight) = dequantized(layer, scales.input);
        Ok(FloatPathAnalysis {
            layer,
            input_scale: scales.input,
            output_scale: scales.output,
            input,
            weight_rows: crate::accumulate::pack_weight_rows(
                &layer.geometry,
                ReductionOrder::TapMajor,
                &weight,
            ),
        })
    }

    /// Analyses output element `index` (NCHW flat).
    pub fn element(&self, index: usize) -> FloatPathElement {
        use crate::accumulate::gather_row;
        use crate::numerics::{Dyadic, ExactSum, f64_parts};
        let layer = self.layer;
        let g = &layer.geometry;
        let [n, oc, oh, ow] = g.output_coords(index);
        let position = [n, oc / g.group_out_channels(), oh, ow];
        let k_len = g.reduction_len();
        let mut row = vec![0.0f32; k_len];
        let order = ReductionOrder::TapMajor;
        gather_row(g, order, &self.input, 0.0, position, &mut row);
        let in_zp = layer.input.zero_point;
        let mut row_q = vec![in_zp; k_len];
        gather_row(g, order, &layer.input.data, in_zp, position, &mut row_q);
        let w = &self.weight_rows[oc * k_len..(oc + 1) * k_len];
        let conv = Float32Conv {
            bias: float_bias(layer),
            bias_first: g.group_in_channels() == 1,
        };
        let float_value = conv.accumulate(&row, w, oc);

        let bias = float_bias(layer).map_or(0.0, |b| b[oc] as f64);
        let (mut sum_float_weights, mut sum_float_both) = (
            ExactSum::with_capacity(k_len + 1),
            ExactSum::with_capacity(k_len + 1),
        );
        sum_float_weights.add_f64(bias);
        sum_float_both.add_f64(bias);
        let mut sum_abs = bias.abs();
        let (scale_mantissa, scale_exponent) = f64_parts(self.input_scale);
        for k in 0..k_len {
            let (wm, we) = f64_parts(w[k] as f64);
            // exact input s_in * (q - zp) times the float weight: at most 53 + 9 + 24 bits.
            let q = (row_q[k] - in_zp) as i128;
            sum_float_weights
                .add_term(scale_mantissa as i128 * q * wm as i128, scale_exponent + we);
            sum_float_both.add_product(row[k] as f64, w[k] as f64);
            sum_abs += (row[k] as f64 * w[k] as f64).abs();
        }
        let (sum_float_weights, sum_float_both) =
            (sum_float_weights.total(), sum_float_both.total());
        let output_scale = Dyadic::from_f64(self.output_scale);
        let zp = layer.output.zero_point as i64;
        let rounded = |v: &Dyadic| -> i64 {
            let q = v.div_round_half_even(&output_scale);
            let saturated = if q.sign() == num_bigint::Sign::Minus {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            };
            i64::try_from(&q).unwrap_or(saturated) + zp
        };

        let exact = sum_float_both.to_f64();
        let inv = (1.0f32 / self.output_scale as f32) as f64;
        let steps = exact * inv;
        let nearest_boundary = (steps - 0.5).round() + 0.5;
        let u = 2f64.powi(-24);
        let nu = (k_len + 2) as f64 * u;
        FloatPathElement {
            float_value,
            with_float_weights: rounded(&sum_float_weights),
            with_float_inputs: rounded(&sum_float_both),
            with_float_sum: rounded(&Dyadic::from_f64(float_value as f64)),
            quantized: rounded_8bit(float_value, self.output_scale) as i64 + zp,
            boundary: BoundaryAnalysis {
                exact,
                steps,
                boundary_distance: (steps - nearest_boundary).abs(),
                error_bound: inv * nu / (1.0 - nu) * sum_abs + steps.abs() * 2f64.powi(-23),
            },
        }
    }
}

/// Analyses output element `index` (NCHW flat) of the float path on `layer`: where its exact
/// value lies relative to the quantizer's rounding boundaries.
pub fn boundary_analysis(layer: &ConvLayer, index: usize) -> Result<BoundaryAnalysis> {
    Ok(FloatPathAnalysis::new(layer)?.element(index).boundary)
}

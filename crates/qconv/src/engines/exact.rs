//! The exact engine: the mathematically exact result, the ground truth every other engine is
//! measured against.
//!
//! Accumulation: `acc = sum (a - a_zp) * (w - w_zp[oc])` in 64-bit integers (no overflow).
//! Requantization: the real value `(acc * s_in * s_w[oc] + bias) / s_out` (an int32 bias is added
//! to `acc` instead) rounded once, to nearest, ties to even, plus the output zero point, clamped to
//! the output range (a fused ReLU clamps at the zero point). For an int32 output (ConvInteger) the
//! result is `acc` itself, refused if it does not fit in int32.

use super::{Accumulators, EngineKind, EngineOutput, RunOptions, fast_or_reference};
use crate::accumulate::{ExactAccumulator, accumulate};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::fastconv::Reduction;
use crate::layer::{Bias, ConvLayer};
use crate::requant::{ExactRequantizer, requantize_all};

/// The exact accumulators of every output element (NCHW), without bias, by the reference loop.
pub fn reference_accumulators(layer: &ConvLayer) -> Vec<i64> {
    let g = &layer.geometry;
    let zero_points: Vec<i32> = (0..g.out_channels)
        .map(|oc| layer.weight.quant.zero_point(oc))
        .collect();
    let acc = ExactAccumulator {
        input_zero_point: layer.input.zero_point,
        weight_zero_points: &zero_points,
    };
    accumulate(g, &layer.input.data, &layer.weight.data, &acc)
}

/// The exact accumulators of every output element (NCHW), without bias: the fast kernels when the
/// result fits in int32 (and `options` allows them), else the reference loop.
pub fn accumulators(layer: &ConvLayer, options: &RunOptions) -> Result<Vec<i64>> {
    fast_or_reference(layer, Reduction::Exact, options, || {
        reference_accumulators(layer)
    })
}

/// The exact accumulators wrapped to int32 (modulo 2^32), what engines with exact int32 kernels
/// compute: the fast kernels when the exact result fits in int32, else the reference loop.
pub fn int32_accumulators(layer: &ConvLayer, options: &RunOptions) -> Result<Vec<i32>> {
    fast_or_reference(layer, Reduction::Exact, options, || {
        reference_accumulators(layer)
            .into_iter()
            .map(|a| a as i32)
            .collect()
    })
}

/// The exact requantizer of a layer with a quantized output.
pub fn requantizer(layer: &ConvLayer) -> Result<ExactRequantizer> {
    let scales = layer.scales(EngineKind::Exact.name())?;
    Ok(ExactRequantizer::new(
        scales.input,
        |oc| layer.weight.quant.scale(oc),
        scales.output,
        layer.bias.as_ref(),
        layer.geometry.out_channels,
        layer.output.zero_point,
        layer.output_range(),
    ))
}

/// The exact real value of every output element in quantized units (zero point included),
/// before rounding and clamping. For display; approximated as `f64`.
pub fn real_values(layer: &ConvLayer, acc: &[i64]) -> Result<Vec<f64>> {
    let plane = layer.geometry.out_h() * layer.geometry.out_w();
    let oc_len = layer.geometry.out_channels;
    if layer.is_integer_output() {
        let bias = |oc: usize| match &layer.bias {
            Some(Bias::Int32(v)) => v[oc] as f64,
            _ => 0.0,
        };
        return Ok(acc
            .iter()
            .enumerate()
            .map(|(i, &a)| a as f64 + bias(i / plane % oc_len))
            .collect());
    }
    let r = requantizer(layer)?;
    Ok(acc
        .iter()
        .enumerate()
        .map(|(i, &a)| r.real_value(a, i / plane % oc_len))
        .collect())
}

/// Runs the exact engine.
pub fn run(layer: &ConvLayer, options: &RunOptions) -> Result<EngineOutput> {
    let acc = accumulators(layer, options)?;
    let g = &layer.geometry;
    let values = if layer.is_integer_output() {
        let plane = g.out_h() * g.out_w();
        acc.iter()
            .enumerate()
            .map(|(i, &a)| {
                let oc = i / plane % g.out_channels;
                let v = a + match &layer.bias {
                    Some(Bias::Int32(b)) => b[oc] as i64,
                    _ => 0,
                };
                i32::try_from(v).map_err(|_| {
                    Error::refused(
                        EngineKind::Exact.name(),
                        format!(
                            "the exact accumulator {v} of output {:?} does not fit the int32 output",
                            g.output_coords(i)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<i32>>>()?
    } else {
        let r = requantizer(layer)?;
        requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w())
    };
    Ok(EngineOutput {
        engine: EngineKind::Exact,
        isa: None,
        path: "exact 64-bit accumulation, exact rounding (ties to even)".to_string(),
        dtype: if layer.is_integer_output() {
            DType::Int32
        } else {
            layer.output.dtype
        },
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Exact(acc),
        warnings: Vec::new(),
    })
}

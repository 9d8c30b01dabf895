//! PyTorch's `qnnpack` quantized engine (PyTorch's fork of QNNPACK).
//!
//! Accumulation is exact in int32: the kernels widen `a - a_zp` and `w - w_zp` to int16 before
//! multiplying (`pmaddwd`). The float bias is quantized to int32 with scale `s_w * s_in` (formed in
//! double) by PyTorch's quantizer and starts the accumulator. Requantization is float32 with the
//! multiplier `f32(f32(s_w * s_in) * f32(1 / s_out))` (a reciprocal, unlike FBGEMM's division),
//! rounded ties-to-even and stored through the x86 pack chain. See `docs/numerics/qnnpack.md`.

use super::pytorch::{check_layer, float_bias};
use super::{Accumulators, EngineKind, EngineOutput, RunOptions};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::quant::pytorch::quantize_int32;
use crate::requant::{Fp32Requantizer, Fp32Store, requantize_all};

/// QNNPACK's requantizer for `layer`. Refuses multipliers that are not finite, normal, positive
/// floats, as PyTorch's `generate_requantization_scales` does.
pub fn requantizer(
    layer: &ConvLayer,
    input_scale: f64,
    output_scale: f64,
) -> Result<Fp32Requantizer> {
    let oc_len = layer.geometry.out_channels;
    let quant = &layer.weight.quant;
    let (si, so) = (input_scale as f32, output_scale as f32);
    let inverse_output_scale = 1.0f32 / so;
    let mut multipliers = Vec::with_capacity(oc_len);
    for oc in 0..oc_len {
        let m = ((quant.scale(oc) as f32) * si) * inverse_output_scale;
        if !(m.is_normal() && m > 0.0) {
            return Err(Error::refused(
                EngineKind::Qnnpack.name(),
                format!(
                    "requantization scale {m:e} of output channel {oc} is not a positive normal \
                     float (PyTorch: \"failed to create op with requantization scale: {m:e}: \
                     requantization scale must be finite and positive\")"
                ),
            ));
        }
        multipliers.push(m);
    }
    let bias = match float_bias(layer) {
        Some(b) => (0..oc_len)
            .map(|oc| quantize_int32(b[oc], quant.scale(oc) * input_scale, 0))
            .collect(),
        None => vec![0; oc_len],
    };
    let zero_point = layer.output.zero_point;
    Ok(Fp32Requantizer {
        multipliers,
        bias,
        zero_point,
        dtype: DType::Uint8,
        range: (if layer.relu { zero_point } else { 0 }, 255),
        store: Fp32Store::PackChain,
    })
}

/// Runs the qnnpack model.
pub fn run(layer: &ConvLayer, options: &RunOptions) -> Result<EngineOutput> {
    let scales = check_layer(EngineKind::Qnnpack.name(), layer)?;
    let r = requantizer(layer, scales.input, scales.output)?;
    let g = &layer.geometry;
    // Exact accumulation; the int32 kernels cannot overflow below ~33000 products of 9-bit
    // operands, and wrap like the hardware beyond.
    let acc = super::exact::int32_accumulators(layer, options)?;
    let values = requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w());
    Ok(EngineOutput {
        engine: EngineKind::Qnnpack,
        isa: None,
        path: "qnnpack, exact int32 accumulation, fp32 requantization".to_string(),
        dtype: DType::Uint8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

//! What PyTorch's quantized conv2d accepts, shared by the fbgemm, x86 and qnnpack models.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layer::{Bias, ConvLayer, LayerScales};

/// Checks the parts of a layer every PyTorch quantized engine requires and returns its scales:
/// quint8 activations and output, qint8 weights, a float32 bias (PyTorch takes the bias in real
/// units), symmetric padding (`Conv2d` takes `[ph, pw]`).
pub(super) fn check_layer(engine: &str, layer: &ConvLayer) -> Result<LayerScales> {
    let refuse = |reason: String| Err(Error::refused(engine, reason));
    let scales = layer.scales(engine)?;
    if layer.input.dtype != DType::Uint8 {
        return refuse(format!(
            "PyTorch's quantized conv takes quint8 (uint8) activations, not {}",
            layer.input.dtype
        ));
    }
    if layer.weight.dtype != DType::Int8 {
        return refuse(format!(
            "PyTorch's quantized conv takes qint8 (int8) weights, not {}",
            layer.weight.dtype
        ));
    }
    if layer.output.dtype != DType::Uint8 {
        return refuse(format!(
            "PyTorch's quantized conv produces quint8 (uint8) like its input, not {}",
            layer.output.dtype
        ));
    }
    if let Some(Bias::Int32(_)) = layer.bias {
        return refuse(
            "PyTorch takes a float32 bias in real units; this layer's bias is int32 (quantized)"
                .to_string(),
        );
    }
    if !layer.geometry.padding.is_symmetric() {
        return refuse(format!(
            "PyTorch's Conv2d pads symmetrically; this layer's padding [top, left, bottom, right] \
             = {:?} is not",
            layer.geometry.padding.as_array()
        ));
    }
    if layer.output.clamp.is_some() {
        return refuse(
            "PyTorch fuses only ReLU; this layer has an explicit output clamp".to_string(),
        );
    }
    Ok(scales)
}

/// The float bias, if any.
pub(super) fn float_bias(layer: &ConvLayer) -> Option<&[f32]> {
    match &layer.bias {
        Some(Bias::Float32(v)) => Some(v),
        _ => None,
    }
}

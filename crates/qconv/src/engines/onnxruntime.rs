//! ONNX Runtime's CPU execution provider (MLAS kernels): QLinearConv and ConvInteger.
//!
//! QLinearConv picks a route per layer: a depthwise kernel (one input and one output channel per
//! group, one weight zero point), a fused symmetric-weight kernel, or im2col + GEMM per group. On
//! x86 without VNNI (AVX2, AVX-512 without VNNI) the u8 x s8 GEMM and symmetric kernels add
//! consecutive products of the tap-major reduction order in saturating int16 (`vpmaddubsw`), like
//! FBGEMM; the depthwise kernels and the u8 x u8 and s8 x s8 kernels are exact, and so is
//! everything with AVX-VNNI or AVX-512-VNNI. ConvInteger with int8 input and uint8 weight runs
//! the u8 x s8 kernel with the weights as the unsigned operand, pairing in channel-major order. Requantization is
//! float32: the int32 bias is added to the accumulator, the sum converted to float, multiplied by
//! `f32(f32(x_scale * w_scale) / y_scale)`, clamped in float and rounded to nearest even. See
//! `docs/numerics/onnxruntime.md`.

use super::onnx::check_onnx_layer;
use super::{Accumulators, EngineKind, EngineOutput, RunOptions, fast_or_reference};
use crate::accumulate::{ZeroPointCorrectedAccumulator, accumulate};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::fastconv::Reduction;
use crate::geometry::ReductionOrder;
use crate::isa::Isa;
use crate::layer::ConvLayer;
use crate::requant::{Fp32Requantizer, Fp32Store, requantize_all};

/// The routes ONNX Runtime's QLinearConv chooses between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrtPath {
    /// One input and one output channel per group: `MlasConvDepthwise`.
    Depthwise,
    /// im2col + quantized GEMM (`MlasGemm`), per group.
    Gemm,
    /// ConvInteger: GEMM with the weights as the A operand.
    ConvInteger,
}

impl OrtPath {
    /// The route's name.
    pub fn name(self) -> &'static str {
        match self {
            OrtPath::Depthwise => "depthwise kernel",
            OrtPath::Gemm => "im2col + GEMM",
            OrtPath::ConvInteger => "ConvInteger GEMM",
        }
    }
}

/// How ONNX Runtime accumulates a layer on an ISA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrtAccumulation {
    pub path: OrtPath,
    /// Whether pairs of products are summed in saturating int16.
    pub saturating: bool,
    /// Added to raw activations before the kernel multiplies them (128 when s8 activations are
    /// fed to a u8 kernel).
    pub activation_offset: i32,
    /// Added to raw weights before the kernel multiplies them (-128 when u8 weights are fed to an
    /// s8 kernel).
    pub weight_offset: i32,
    /// The order the kernel walks (and pairs) taps in.
    pub order: ReductionOrder,
}

/// The accumulation ONNX Runtime performs on `layer` modelled on `isa`.
pub fn accumulation(layer: &ConvLayer, isa: Isa) -> Result<OrtAccumulation> {
    let engine = EngineKind::OnnxRuntime.name();
    let g = &layer.geometry;
    let (x, w) = (layer.input.dtype, layer.weight.dtype);
    let vnni = isa.has_vnni();
    if layer.is_integer_output() {
        if layer.weight.quant.per_channel && layer.weight.quant.zero_points.len() > 1 {
            return Err(Error::refused(
                engine,
                "ONNX Runtime's ConvInteger takes a per-tensor weight zero point only \
                 (\"Non per-tensor quantization is not supported now\")",
            ));
        }
        // ConvInteger runs an NCHW im2col GEMM with the weights as the A operand. With uint8
        // weights and int8 activations that is MLAS's u8 x s8 kernel: saturating pairs, in the
        // channel-major order of the NCHW im2col.
        return Ok(OrtAccumulation {
            path: OrtPath::ConvInteger,
            saturating: !vnni && w == DType::Uint8 && x == DType::Int8,
            activation_offset: 0,
            weight_offset: 0,
            order: ReductionOrder::ChannelMajor,
        });
    }
    if x == DType::Int8 && w == DType::Uint8 {
        return Err(Error::refused(
            engine,
            "ONNX Runtime has no QLinearConv kernel for int8 input with uint8 weight \
             (NOT_IMPLEMENTED: Could not find an implementation for QLinearConv)",
        ));
    }
    // The depthwise kernel takes one weight zero point; with differing per-channel zero points
    // ONNX Runtime 1.32 runs such a layer as one GEMM per group.
    let uniform_zero_points = layer
        .weight
        .quant
        .zero_points
        .windows(2)
        .all(|z| z[0] == z[1]);
    let depthwise =
        g.group_in_channels() == 1 && g.group_out_channels() == 1 && uniform_zero_points;
    let path = if depthwise {
        OrtPath::Depthwise
    } else {
        OrtPath::Gemm
    };
    let saturating = path == OrtPath::Gemm && !vnni && x == DType::Uint8 && w == DType::Int8;
    Ok(OrtAccumulation {
        path,
        saturating,
        activation_offset: 0,
        weight_offset: 0,
        order: ReductionOrder::TapMajor,
    })
}

/// ONNX Runtime's requantizer for a QLinearConv layer.
pub fn requantizer(layer: &ConvLayer, input_scale: f64, output_scale: f64) -> Fp32Requantizer {
    Fp32Requantizer {
        multipliers: super::onnx::qlinear_multipliers(layer, input_scale, output_scale),
        bias: layer.int32_bias(),
        zero_point: layer.output.zero_point,
        dtype: layer.output.dtype,
        range: (
            layer.output.dtype.min() as i32,
            layer.output.dtype.max() as i32,
        ),
        store: Fp32Store::FloatClamp,
    }
}

/// The zero-point-corrected int32 accumulators (without bias) of `acc` on `layer`: the fast
/// kernels when `options` allow them and they compute exactly this accumulation (exact routes,
/// and saturating pairs of raw u8 x s8 products in tap-major order), else
/// [`reference_accumulators`]. ConvInteger's saturating route pairs in channel-major order,
/// which the fast kernels do not: it always takes the reference loop.
pub fn accumulators(
    layer: &ConvLayer,
    acc: &OrtAccumulation,
    options: &RunOptions,
) -> Result<Vec<i32>> {
    if !acc.saturating {
        return super::exact::int32_accumulators(layer, options);
    }
    let tap_major_u8s8 = acc.order == ReductionOrder::TapMajor
        && acc.activation_offset == 0
        && acc.weight_offset == 0
        && layer.input.dtype == DType::Uint8
        && layer.weight.dtype == DType::Int8;
    if !tap_major_u8s8 {
        return Ok(reference_accumulators(layer, acc));
    }
    fast_or_reference(layer, Reduction::PairSaturating, options, || {
        reference_accumulators(layer, acc)
    })
}

/// [`accumulators`] by the reference loop.
pub fn reference_accumulators(layer: &ConvLayer, acc: &OrtAccumulation) -> Vec<i32> {
    let g = &layer.geometry;
    if !acc.saturating {
        return super::exact::reference_accumulators(layer)
            .into_iter()
            .map(|a| a as i32)
            .collect();
    }
    let input: Vec<i32> = layer
        .input
        .data
        .iter()
        .map(|&a| a + acc.activation_offset)
        .collect();
    let weight: Vec<i32> = layer
        .weight
        .data
        .iter()
        .map(|&w| w + acc.weight_offset)
        .collect();
    let zero_points: Vec<i32> = (0..g.out_channels)
        .map(|oc| layer.weight.quant.zero_point(oc) + acc.weight_offset)
        .collect();
    let corrected = ZeroPointCorrectedAccumulator::new(
        layer.input.zero_point + acc.activation_offset,
        &zero_points,
        &weight,
        g.reduction_len(),
        true,
        acc.order,
    );
    accumulate(g, &input, &weight, &corrected)
}

/// Runs the ONNX Runtime model.
pub fn run(layer: &ConvLayer, isa: Isa, options: &RunOptions) -> Result<EngineOutput> {
    let engine = EngineKind::OnnxRuntime;
    check_onnx_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    let model = accumulation(layer, isa)?;
    let acc = accumulators(layer, &model, options)?;
    let (values, dtype) = if layer.is_integer_output() {
        (acc.clone(), DType::Int32)
    } else {
        let scales = layer.scales(engine.name())?;
        let r = requantizer(layer, scales.input, scales.output);
        (
            requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w()),
            layer.output.dtype,
        )
    };
    let accumulation = if model.saturating {
        "int16 pair saturation (vpmaddubsw)"
    } else {
        "exact int32"
    };
    Ok(EngineOutput {
        engine,
        isa: Some(isa),
        path: format!("onnxruntime {}, {accumulation}", model.path.name()),
        dtype,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
        warnings: Vec::new(),
    })
}

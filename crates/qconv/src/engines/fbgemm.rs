//! PyTorch's `fbgemm` quantized engine (FBGEMM), on the modelled ISA.
//!
//! FBGEMM multiplies raw u8 activations by raw s8 weights and removes the zero points afterwards
//! with row and column sums. Without VNNI its kernels add each pair of consecutive products (in the
//! tap-major reduction order of each group) in saturating int16 (`vpmaddubsw`); with AVX-512-VNNI
//! the GEMM and groupwise kernels accumulate exactly (`vpdpbusd`) but the depthwise kernel, an
//! AVX2-only JIT, still saturates. Requantization is in float32 with the bias added in float.
//! See `docs/numerics/fbgemm.md`.

use super::pytorch::{check_layer, float_bias};
use super::{Accumulators, EngineKind, EngineOutput};
use crate::accumulate::{ZeroPointCorrectedAccumulator, accumulate, pack_weight_rows};
use crate::dtype::DType;
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::isa::Isa;
use crate::layer::ConvLayer;
use crate::requant::{FloatBiasFp32Requantizer, FloatBiasTerm, requantize_all};

/// The convolution routes FBGEMM chooses between (`ConvFastPath`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FbgemmPath {
    /// The depthwise JIT kernel (3x3, 5x5, 7x7; groups a multiple of 8).
    Depthwise,
    /// The groupwise kernel (3x3, 2/4/8/16 channels per group).
    Groupwise,
    /// 1x1 convolutions as a plain GEMM.
    Pointwise,
    /// Everything else: im2col, then GEMM.
    Im2col,
}

impl FbgemmPath {
    /// The route's name.
    pub fn name(self) -> &'static str {
        match self {
            FbgemmPath::Depthwise => "depthwise",
            FbgemmPath::Groupwise => "groupwise",
            FbgemmPath::Pointwise => "pointwise",
            FbgemmPath::Im2col => "im2col",
        }
    }

    /// Chooses the route as FBGEMM does for a 2-D, non-transposed conv on `isa`.
    pub fn select(g: &ConvGeometry, isa: Isa) -> FbgemmPath {
        let pad = g.padding;
        let pads = [pad.top, pad.left, pad.bottom, pad.right];
        let k = g.kernel[0];
        let depthwise = g.groups == g.in_channels
            && (g.out_channels == g.groups || g.out_channels == 2 * g.groups)
            && g.groups % 8 == 0
            && g.stride.iter().all(|&s| s == 1 || s == 2)
            && g.kernel[0] == g.kernel[1]
            && matches!(k, 3 | 5 | 7)
            && g.dilation == [1, 1]
            && pads.iter().all(|&p| p == (k - 1) / 2);
        if depthwise {
            return FbgemmPath::Depthwise;
        }
        let (cg, ocg) = (g.group_in_channels(), g.group_out_channels());
        let groups_together = {
            let lanes = if isa == Isa::Avx2 { 32 } else { 64 };
            (lanes / ocg.max(1) / cg.max(4)).max(1)
        };
        let groupwise = cg == ocg
            && matches!(cg, 2 | 4 | 8 | 16)
            && g.groups >= groups_together
            && g.kernel == [3, 3]
            && pads.iter().all(|&p| p == 1)
            && g.dilation == [1, 1]
            && (g.stride == [1, 1] || g.stride == [2, 2]);
        if groupwise {
            return FbgemmPath::Groupwise;
        }
        if g.kernel == [1, 1] && g.stride == [1, 1] && g.dilation == [1, 1] && pads == [0; 4] {
            return FbgemmPath::Pointwise;
        }
        FbgemmPath::Im2col
    }

    /// Whether this route's kernel sums products in saturating int16 pairs on `isa`.
    pub fn saturates(self, isa: Isa) -> bool {
        // The depthwise JIT uses vpmaddubsw on every ISA; the others use vpdpbusd with VNNI.
        self == FbgemmPath::Depthwise || !isa.has_avx512_vnni()
    }
}

/// FBGEMM's requantizer for `layer`: `atws[i] = f32(s_in * s_w[i])`, multiplier
/// `f32(atws[i] / s_out)`; the float bias is brought to accumulator units with a fused
/// multiply-add by `f32(1 / f64(atws))` (per-tensor weights) or by dividing by `atws[oc]`
/// (per-channel weights). ReLU clamps at the output zero point.
pub fn requantizer(
    layer: &ConvLayer,
    input_scale: f64,
    output_scale: f64,
) -> FloatBiasFp32Requantizer {
    let oc_len = layer.geometry.out_channels;
    let quant = &layer.weight.quant;
    let (si, so) = (input_scale as f32, output_scale as f32);
    let atws: Vec<f32> = (0..oc_len)
        .map(|oc| si * (quant.scale(oc) as f32))
        .collect();
    let multipliers = atws.iter().map(|&a| a / so).collect();
    let bias = match float_bias(layer) {
        None => FloatBiasTerm::None,
        Some(bias) if quant.per_channel => {
            FloatBiasTerm::Precomputed(bias.iter().zip(&atws).map(|(&b, &a)| b / a).collect())
        }
        Some(bias) => FloatBiasTerm::FusedReciprocal {
            bias: bias.to_vec(),
            reciprocal: atws.iter().map(|&a| (1.0f64 / a as f64) as f32).collect(),
        },
    };
    let zero_point = layer.output.zero_point;
    FloatBiasFp32Requantizer {
        multipliers,
        bias,
        zero_point,
        range: (if layer.relu { zero_point } else { 0 }, 255),
    }
}

/// The zero-point-corrected int32 accumulators FBGEMM computes on `path` and `isa`, and whether
/// they saturated pairs.
pub fn accumulators(layer: &ConvLayer, path: FbgemmPath, isa: Isa) -> Vec<i32> {
    let g = &layer.geometry;
    let rows = pack_weight_rows(g, &layer.weight.data);
    let zero_points: Vec<i32> = (0..g.out_channels)
        .map(|oc| layer.weight.quant.zero_point(oc))
        .collect();
    let acc = ZeroPointCorrectedAccumulator::new(
        layer.input.zero_point,
        &zero_points,
        &rows,
        g.reduction_len(),
        path.saturates(isa),
    );
    accumulate(g, &layer.input.data, &rows, &acc)
}

/// Runs the fbgemm model as engine `engine` (fbgemm itself, or x86 when it routes to FBGEMM).
pub(super) fn run_as(engine: EngineKind, layer: &ConvLayer, isa: Isa) -> Result<EngineOutput> {
    let scales = check_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    let path = FbgemmPath::select(g, isa);
    let acc = accumulators(layer, path, isa);
    let r = requantizer(layer, scales.input, scales.output);
    let values = requantize_all(&r, &acc, g.out_channels, g.out_h() * g.out_w());
    let accumulation = if path.saturates(isa) {
        "int16 pair saturation (vpmaddubsw)"
    } else {
        "exact int32 (vpdpbusd)"
    };
    Ok(EngineOutput {
        engine,
        isa: Some(isa),
        path: format!("fbgemm {} kernel, {accumulation}", path.name()),
        dtype: DType::Uint8,
        shape: g.output_shape(),
        values,
        accumulators: Accumulators::Int32(acc),
    })
}

/// Runs the fbgemm model.
pub fn run(layer: &ConvLayer, isa: Isa) -> Result<EngineOutput> {
    run_as(EngineKind::Fbgemm, layer, isa)
}

//! PyTorch's `fbgemm` quantized engine (FBGEMM), on the modelled ISA.
//!
//! FBGEMM multiplies raw u8 activations by raw s8 weights and removes the zero points afterwards
//! with row and column sums. Without VNNI its kernels add each pair of consecutive products (in the
//! tap-major reduction order of each group) in saturating int16 (`vpmaddubsw`); with AVX-512-VNNI
//! the GEMM and groupwise kernels accumulate exactly (`vpdpbusd`) but the depthwise kernel, an
//! AVX2-only JIT, still saturates. Requantization is in float32 with the bias added in float.
//! See `docs/numerics/fbgemm.md`.

use super::pytorch::{check_layer, float_bias};
use super::{Accumulators, EngineKind, EngineOutput, RunOptions, fast_or_reference};
use crate::accumulate::{ZeroPointCorrectedAccumulator, accumulate};
use crate::dtype::DType;
use crate::error::Result;
use crate::fastconv::Reduction;
use crate::geometry::{ConvGeometry, ReductionOrder};
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
            && g.groups.is_multiple_of(8)
            && g.stride.iter().all(|&s| s == 1 || s == 2)
            && g.kernel[0] == g.kernel[1]
            && matches!(k, 3 | 5 | 7)
            && g.dilation == [1, 1]
            && pads.iter().all(|&p| p == (k - 1) / 2);
        if depthwise {
            return FbgemmPath::Depthwise;
        }
        let (cg, ocg) = (g.group_in_channels(), g.group_out_channels());
        let groupwise = cg == ocg
            && matches!(cg, 2 | 4 | 8 | 16)
            && g.groups >= groups_together(g, isa)
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

/// FBGEMM's groupwise kernel handles `G_together` groups per step and has no tail: when the
/// groupwise route is taken with `groups` not a multiple of `G_together`, FBGEMM (as shipped in
/// PyTorch 2.15) reads and writes past its buffers and returns garbage or crashes. The model
/// computes the intended result; this says so.
pub fn groupwise_defect(g: &ConvGeometry, path: FbgemmPath, isa: Isa) -> Option<String> {
    let together = groups_together(g, isa);
    (path == FbgemmPath::Groupwise && !g.groups.is_multiple_of(together)).then(|| {
        format!(
            "FBGEMM's groupwise kernel processes {together} groups at a time on {isa} and \
             mishandles {} groups (not a multiple): the real engine returns garbage or crashes \
             on this layer; qconv shows the intended result",
            g.groups
        )
    })
}

/// How many groups FBGEMM's groupwise kernel processes together
/// (`PackWeightMatrixForGConv::numOfGroupsTogether`): 32-byte vectors on AVX2 (also with
/// AVX-VNNI, which FBGEMM does not use), 64 on AVX-512.
fn groups_together(g: &ConvGeometry, isa: Isa) -> usize {
    let lanes = if isa.has_avx512() { 64 } else { 32 };
    (lanes / g.group_out_channels().max(1) / g.group_in_channels().max(4)).max(1)
}

/// FBGEMM's requantizer for `layer` on `path`: `atws[i] = f32(s_in * s_w[i])`, multiplier
/// `f32(atws[i] / s_out)`; the float bias is brought to accumulator units by dividing by
/// `atws[oc]` (per-channel weights) or by multiplying with `f32(1 / f64(atws))` (per-tensor
/// weights), which the GEMM and groupwise kernels fuse with the add into one FMA and the
/// depthwise kernel does not. ReLU clamps at the output zero point.
pub fn requantizer(
    layer: &ConvLayer,
    path: FbgemmPath,
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
    let reciprocal = |a: f32| (1.0f64 / a as f64) as f32;
    let bias = match float_bias(layer) {
        None => FloatBiasTerm::None,
        Some(bias) if quant.per_channel => {
            FloatBiasTerm::Precomputed(bias.iter().zip(&atws).map(|(&b, &a)| b / a).collect())
        }
        // The depthwise kernel's own requantization multiplies and adds in two roundings.
        Some(bias) if path == FbgemmPath::Depthwise => FloatBiasTerm::Precomputed(
            bias.iter()
                .zip(&atws)
                .map(|(&b, &a)| b * reciprocal(a))
                .collect(),
        ),
        Some(bias) => FloatBiasTerm::FusedReciprocal {
            bias: bias.to_vec(),
            reciprocal: atws.iter().map(|&a| reciprocal(a)).collect(),
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

/// The zero-point-corrected int32 accumulators FBGEMM computes on `path` and `isa`: the fast
/// kernels when `options` allow them (saturating u8 x s8 pairs in tap-major order, or the exact
/// sum, which equals FBGEMM's wrapping int32 result whenever a plan exists), else
/// [`reference_accumulators`].
pub fn accumulators(
    layer: &ConvLayer,
    path: FbgemmPath,
    isa: Isa,
    options: &RunOptions,
) -> Result<Vec<i32>> {
    let reduction = if path.saturates(isa) {
        Reduction::PairSaturating
    } else {
        Reduction::Exact
    };
    fast_or_reference(layer, reduction, options, || {
        reference_accumulators(layer, path, isa)
    })
}

/// [`accumulators`] by the reference loop.
pub fn reference_accumulators(layer: &ConvLayer, path: FbgemmPath, isa: Isa) -> Vec<i32> {
    let g = &layer.geometry;
    let zero_points: Vec<i32> = (0..g.out_channels)
        .map(|oc| layer.weight.quant.zero_point(oc))
        .collect();
    let acc = ZeroPointCorrectedAccumulator::new(
        layer.input.zero_point,
        &zero_points,
        &layer.weight.data,
        g.reduction_len(),
        path.saturates(isa),
        ReductionOrder::TapMajor,
    );
    accumulate(g, &layer.input.data, &layer.weight.data, &acc)
}

/// Runs the fbgemm model as engine `engine` (fbgemm itself, or x86 when it routes to FBGEMM).
pub(super) fn run_as(
    engine: EngineKind,
    layer: &ConvLayer,
    isa: Isa,
    options: &RunOptions,
) -> Result<EngineOutput> {
    let scales = check_layer(engine.name(), layer)?;
    let g = &layer.geometry;
    let path = FbgemmPath::select(g, isa);
    let acc = accumulators(layer, path, isa, options)?;
    let r = requantizer(layer, path, scales.input, scales.output);
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
        warnings: groupwise_defect(g, path, isa).into_iter().collect(),
    })
}

/// Runs the fbgemm model.
pub fn run(layer: &ConvLayer, isa: Isa, options: &RunOptions) -> Result<EngineOutput> {
    run_as(EngineKind::Fbgemm, layer, isa, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Padding;

    fn conv(
        c: usize,
        oc: usize,
        groups: usize,
        k: usize,
        pad: usize,
        stride: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            in_channels: c,
            in_h: 12,
            in_w: 12,
            out_channels: oc,
            kernel: [k, k],
            stride: [stride, stride],
            dilation: [1, 1],
            padding: Padding::symmetric(pad, pad),
            groups,
        }
    }

    #[test]
    fn routes_follow_fbgemm_conv_fast_path() {
        use FbgemmPath::*;
        let avx2 = Isa::Avx2;
        assert_eq!(FbgemmPath::select(&conv(1, 1, 1, 5, 0, 1), avx2), Im2col);
        assert_eq!(FbgemmPath::select(&conv(8, 8, 8, 3, 1, 1), avx2), Depthwise);
        assert_eq!(
            FbgemmPath::select(&conv(8, 16, 8, 5, 2, 2), avx2),
            Depthwise
        );
        assert_eq!(FbgemmPath::select(&conv(6, 6, 6, 3, 1, 1), avx2), Im2col); // 6 % 8 != 0
        assert_eq!(FbgemmPath::select(&conv(8, 8, 8, 3, 0, 1), avx2), Im2col); // padding
        assert_eq!(
            FbgemmPath::select(&conv(64, 64, 16, 3, 1, 1), avx2),
            Groupwise
        );
        // 8 -> 8 channels, one group: G_together is 1, so a plain conv is "groupwise".
        assert_eq!(FbgemmPath::select(&conv(8, 8, 1, 3, 1, 1), avx2), Groupwise);
        // 2 channels per group need 4 groups on AVX2 and 8 on AVX-512.
        assert_eq!(FbgemmPath::select(&conv(8, 8, 4, 3, 1, 1), avx2), Groupwise);
        assert_eq!(
            FbgemmPath::select(&conv(8, 8, 4, 3, 1, 1), Isa::Avx512),
            Im2col
        );
        assert_eq!(
            FbgemmPath::select(&conv(16, 32, 1, 1, 0, 1), avx2),
            Pointwise
        );
        assert_eq!(FbgemmPath::select(&conv(16, 32, 1, 1, 0, 2), avx2), Im2col);
    }

    #[test]
    fn saturation_by_route_and_isa() {
        for path in [
            FbgemmPath::Im2col,
            FbgemmPath::Pointwise,
            FbgemmPath::Groupwise,
        ] {
            assert!(path.saturates(Isa::Avx2) && path.saturates(Isa::Avx512));
            assert!(!path.saturates(Isa::Avx512Vnni));
        }
        assert!(FbgemmPath::Depthwise.saturates(Isa::Avx512Vnni));
    }

    #[test]
    fn groupwise_tail_defect_is_reported() {
        let g = conv(20, 20, 10, 3, 1, 1); // 2 channels per group, 10 groups
        let path = FbgemmPath::select(&g, Isa::Avx2);
        assert_eq!(path, FbgemmPath::Groupwise);
        let w = groupwise_defect(&g, path, Isa::Avx2).expect("10 is not a multiple of 4");
        assert!(w.contains("4 groups at a time"), "{w}");
        let g = conv(32, 32, 16, 3, 1, 1);
        assert_eq!(
            groupwise_defect(&g, FbgemmPath::select(&g, Isa::Avx2), Isa::Avx2),
            None
        );
    }
}

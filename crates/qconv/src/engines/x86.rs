//! PyTorch's default `x86` quantized engine: FBGEMM, except on CPUs with AVX-512-VNNI where
//! layers with symmetric weights and at most 100 groups go to oneDNN.
//!
//! See `docs/numerics/fbgemm.md` (the x86 engine shares its page).

use super::{EngineKind, EngineOutput, RunOptions, fbgemm};
use crate::error::Result;
use crate::isa::Isa;
use crate::layer::ConvLayer;

/// The library the x86 engine hands a layer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X86Route {
    Fbgemm,
    Onednn,
}

/// PyTorch's `should_use_onednn_quant` on Linux: an AVX-512-VNNI CPU, symmetric weights (every
/// zero point 0) and at most 100 groups.
pub fn route(layer: &ConvLayer, isa: Isa) -> X86Route {
    if isa.has_avx512_vnni() && layer.weight.quant.is_symmetric() && layer.geometry.groups <= 100 {
        X86Route::Onednn
    } else {
        X86Route::Fbgemm
    }
}

/// Runs the x86 model.
pub fn run(layer: &ConvLayer, isa: Isa, options: &RunOptions) -> Result<EngineOutput> {
    match route(layer, isa) {
        X86Route::Fbgemm => fbgemm::run_as(EngineKind::X86, layer, isa, options),
        X86Route::Onednn => super::onednn::run_as(EngineKind::X86, layer, isa, options),
    }
}

//! Engine models: each reproduces one engine's integers, as that engine computes them.
//!
//! A model is "accumulate, then requantize" over the shared pieces in [`crate::accumulate`] and
//! [`crate::requant`]; its module holds only what is particular to its engine: which layers it
//! refuses, which accumulation its kernels perform on the modelled ISA, and how it builds its
//! requantization constants. `docs/numerics/<engine>.md` documents each formula.

pub mod exact;
pub mod fbgemm;
pub mod float_path;
pub mod narrow;
pub mod onednn;
pub mod onnx;
pub mod onnxruntime;
mod pytorch;
pub mod qnnpack;
pub mod tflite;
pub mod tflite_reference;
pub mod x86;

use std::fmt;
use std::str::FromStr;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::fastconv::output::Accumulators as Accumulators32;
use crate::fastconv::{ConvPlan, Reduction};
use crate::isa::Isa;
use crate::kernels::KernelIsa;
use crate::layer::ConvLayer;
use crate::requant::FixedPointRounding;

/// The engines qconv models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EngineKind {
    /// Exact integer accumulation and exact requantization (ties to even): the ground truth.
    Exact,
    /// PyTorch's float path: dequantize, float32 conv, quantize.
    FloatPath,
    /// PyTorch's `fbgemm` quantized engine.
    Fbgemm,
    /// PyTorch's default `x86` quantized engine (FBGEMM, or oneDNN on VNNI CPUs).
    X86,
    /// PyTorch's `qnnpack` quantized engine.
    Qnnpack,
    /// The ONNX operator specification as the ONNX reference evaluator computes it.
    Onnx,
    /// ONNX Runtime's CPU execution provider.
    OnnxRuntime,
    /// TFLite's reference int8 kernels (fixed point, double rounding).
    TfliteReference,
    /// TFLite's reference int8 kernels built with `TFLITE_SINGLE_ROUNDING`.
    TfliteReferenceSingleRounding,
    /// The TFLite interpreter's default kernels (the XNNPACK delegate).
    Tflite,
}

impl EngineKind {
    /// Every engine, in report order.
    pub const ALL: [EngineKind; 10] = [
        EngineKind::Exact,
        EngineKind::FloatPath,
        EngineKind::Fbgemm,
        EngineKind::X86,
        EngineKind::Qnnpack,
        EngineKind::Onnx,
        EngineKind::OnnxRuntime,
        EngineKind::TfliteReference,
        EngineKind::TfliteReferenceSingleRounding,
        EngineKind::Tflite,
    ];

    /// The engine's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Exact => "exact",
            EngineKind::FloatPath => "float-path",
            EngineKind::Fbgemm => "fbgemm",
            EngineKind::X86 => "x86",
            EngineKind::Qnnpack => "qnnpack",
            EngineKind::Onnx => "onnx",
            EngineKind::OnnxRuntime => "onnxruntime",
            EngineKind::TfliteReference => "tflite-reference",
            EngineKind::TfliteReferenceSingleRounding => "tflite-reference-single-rounding",
            EngineKind::Tflite => "tflite",
        }
    }

    /// The engine's label in reports: its name, with `isa` when its integers depend on it
    /// (`fbgemm(avx2)`).
    pub fn label(self, isa: Option<Isa>) -> String {
        match isa {
            Some(isa) if self.depends_on_isa() => format!("{self}({isa})"),
            _ => self.to_string(),
        }
    }

    /// The key of this engine's results in a golden case's `expected` and `errors`.
    pub fn expected_key(self) -> &'static str {
        match self {
            EngineKind::FloatPath => "float_path",
            EngineKind::Onnx => "onnx_reference",
            EngineKind::TfliteReference => "tflite_reference",
            EngineKind::TfliteReferenceSingleRounding => "tflite_reference_single_rounding",
            other => other.name(),
        }
    }

    /// Whether the engine models an accumulator narrower than 32 bits when
    /// [`RunOptions::accumulator`] asks for one.
    pub fn models_accumulator_width(self) -> bool {
        matches!(
            self,
            EngineKind::TfliteReference
                | EngineKind::TfliteReferenceSingleRounding
                | EngineKind::Tflite
        )
    }

    /// Whether the engine's integers depend on the modelled ISA.
    pub fn depends_on_isa(self) -> bool {
        matches!(
            self,
            EngineKind::Fbgemm | EngineKind::X86 | EngineKind::OnnxRuntime
        )
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        EngineKind::ALL
            .into_iter()
            .find(|e| e.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = EngineKind::ALL.iter().map(|e| e.name()).collect();
                Error::invalid(
                    "engine",
                    format!(
                        "unknown engine `{s}` (expected one of {})",
                        names.join(", ")
                    ),
                )
            })
    }
}

/// Options of an engine run.
///
/// `threads`, `kernel` and `reference` choose how accumulators are computed, never what they
/// are: every engine returns the same [`EngineOutput`] whatever their values.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The ISA to model. When `None`: the ISA the layer records, else the host's.
    pub isa: Option<Isa>,
    /// Threads for the fast kernels. When `None`: every core
    /// (`std::thread::available_parallelism`), except that layers too small to gain from
    /// threads run on the calling thread. `Some(0)` is an error.
    pub threads: Option<usize>,
    /// The kernel set of the fast kernels. When `None`: [`KernelIsa::detect`] (the best this CPU
    /// has, or the `QCONV_KERNEL` environment variable).
    pub kernel: Option<KernelIsa>,
    /// Compute every accumulator with the plain reference loop, never the fast kernels (to test
    /// the fast path against it).
    pub reference: bool,
    /// Model an accumulator of this width instead of the engine's own (TFLite engines only, see
    /// [`EngineKind::models_accumulator_width`]; the exact engine ignores it, every other engine
    /// refuses it). Unlike the options above, this changes the results.
    pub accumulator: Option<narrow::AccumulatorWidth>,
}

/// Layers with fewer multiply-accumulates than this run on one thread unless `threads` says
/// otherwise: starting a thread pool would cost more than it saves.
const SMALL_LAYER_MACS: u64 = 1 << 20;

impl RunOptions {
    /// The ISA modelled for `layer`: the option, else the layer's recorded ISA, else the host's.
    pub fn resolve_isa(&self, layer: &ConvLayer) -> Isa {
        self.isa.or(layer.recorded_isa).unwrap_or_else(Isa::host)
    }

    /// Checks the options: a thread count of at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.threads == Some(0) {
            return Err(Error::invalid("threads", "must be at least 1"));
        }
        Ok(())
    }

    /// The number of threads the fast kernels use on `layer`.
    pub fn resolve_threads(&self, layer: &ConvLayer) -> Result<usize> {
        self.validate()?;
        Ok(match self.threads {
            Some(n) => n,
            None if layer.geometry.macs() < SMALL_LAYER_MACS => 1,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// The kernel set of the fast kernels: the option, else [`KernelIsa::detect`].
    pub fn resolve_kernel(&self) -> Result<KernelIsa> {
        match self.kernel {
            Some(k) => Ok(k),
            None => KernelIsa::detect().map_err(|e| match e {
                Error::Invalid { message, .. } => Error::invalid("QCONV_KERNEL", message),
                other => other,
            }),
        }
    }

    /// A fast plan computing `reduction` on `layer`, or `None` when the accumulators must come
    /// from the reference loop: `reference` is set, or the fast kernels cannot compute this
    /// reduction exactly as asked (see [`ConvPlan::new`]).
    pub fn plan(&self, layer: &ConvLayer, reduction: Reduction) -> Result<Option<ConvPlan>> {
        if self.reference {
            return Ok(None);
        }
        let threads = self.resolve_threads(layer)?;
        ConvPlan::new(layer, reduction, self.resolve_kernel()?, threads)
    }
}

/// The int32 accumulators of `reduction` on `layer` (NCHW, no bias, zero points removed): from
/// the fast kernels when [`RunOptions::plan`] gives a plan, else from `reference`, which must
/// compute the same reduction the same way. The fast kernels compute it exactly as
/// [`Reduction`] documents: [`Reduction::Exact`] is the exact sum (plans exist only when it fits
/// in int32), [`Reduction::PairSaturating`] what
/// [`ZeroPointCorrectedAccumulator`](crate::accumulate::ZeroPointCorrectedAccumulator) with
/// saturating pairs in [`ReductionOrder::TapMajor`](crate::geometry::ReductionOrder::TapMajor)
/// order computes on raw u8 activations and s8 weights.
pub fn fast_or_reference<T: From<i32>>(
    layer: &ConvLayer,
    reduction: Reduction,
    options: &RunOptions,
    reference: impl FnOnce() -> Vec<T>,
) -> Result<Vec<T>> {
    match options.plan(layer, reduction)? {
        Some(plan) => {
            let mut out = vec![0i32; layer.output_len()];
            plan.run(&layer.input.data, &mut out, &Accumulators32);
            Ok(out.into_iter().map(T::from).collect())
        }
        None => Ok(reference()),
    }
}

/// An engine's pre-requantization accumulators, one per output element (NCHW).
#[derive(Clone, Debug, PartialEq)]
pub enum Accumulators {
    /// Exact integer sums (no bias).
    Exact(Vec<i64>),
    /// The engine's int32 accumulator (zero points removed; no bias), as the engine computes it.
    Int32(Vec<i32>),
    /// A float accumulator (the float path's conv output, bias included).
    Float(Vec<f32>),
}

/// The result of running an engine model on a layer.
#[derive(Clone, Debug)]
pub struct EngineOutput {
    pub engine: EngineKind,
    /// The ISA modelled, for engines whose integers depend on it.
    pub isa: Option<Isa>,
    /// The engine's internal route for this layer, in words ("im2col GEMM, int16 pair
    /// saturation").
    pub path: String,
    pub dtype: DType,
    /// `[N, OC, OH, OW]`.
    pub shape: [usize; 4],
    /// Output integers, NCHW row-major.
    pub values: Vec<i32>,
    pub accumulators: Accumulators,
    /// Things the user should know about this result, e.g. that the real engine is known to
    /// compute this layer wrongly.
    pub warnings: Vec<String>,
}

impl EngineOutput {
    /// The engine's label in reports: its name, with the ISA when its integers depend on it.
    pub fn label(&self) -> String {
        EngineKind::label(self.engine, self.isa)
    }
}

/// Checks that PyTorch's quantized engines accept `layer`; `engine` names the engine in errors.
pub fn check_pytorch_layer(engine: &str, layer: &ConvLayer) -> Result<()> {
    pytorch::check_layer(engine, layer).map(|_| ())
}

/// Checks that the ONNX operators accept `layer`; `engine` names the engine in errors.
pub fn check_onnx_layer(engine: &str, layer: &ConvLayer) -> Result<()> {
    onnx::check_onnx_layer(engine, layer)
}

/// Runs engine `kind` on `layer`.
pub fn run(kind: EngineKind, layer: &ConvLayer, options: &RunOptions) -> Result<EngineOutput> {
    options.validate()?;
    if let Some(w) = options.accumulator
        && !kind.models_accumulator_width()
        && kind != EngineKind::Exact
    {
        return Err(Error::invalid(
            "acc-bits",
            format!(
                "engine {kind} does not model a {w}; the TFLite engines (tflite-reference, \
                     tflite-reference-single-rounding, tflite) do"
            ),
        ));
    }
    let isa = options.resolve_isa(layer);
    match kind {
        EngineKind::Exact => exact::run(layer, options),
        EngineKind::FloatPath => float_path::run(layer),
        EngineKind::Fbgemm => fbgemm::run(layer, isa, options),
        EngineKind::X86 => x86::run(layer, isa, options),
        EngineKind::Qnnpack => qnnpack::run(layer, options),
        EngineKind::Onnx => onnx::run(layer, options),
        EngineKind::OnnxRuntime => onnxruntime::run(layer, isa, options),
        EngineKind::TfliteReference => {
            tflite_reference::run(layer, options, FixedPointRounding::Double)
        }
        EngineKind::TfliteReferenceSingleRounding => {
            tflite_reference::run(layer, options, FixedPointRounding::Single)
        }
        EngineKind::Tflite => tflite::run(layer, options),
    }
}

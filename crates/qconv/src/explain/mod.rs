//! Explanations: for every output element where two engines differ, the integer evidence that
//! accounts for the whole difference.
//!
//! Each engine's result is walked as a chain from the exact answer:
//!
//! 1. **Accumulator causes** (`acc_delta != 0`) take the exact accumulator to the engine's own:
//!    `sum acc_delta == acc[engine] - exact_acc`, exactly.
//! 2. The engine's accumulator is rounded exactly (the exact engine's requantization, exact bias);
//!    that unclamped integer starts the rounding chain.
//! 3. **Rounding causes** (`acc_delta == 0`) each carry `from` and `to` integers in their detail:
//!    the first starts where step 2 ended, each starts where the previous ended, and the last ends
//!    at the engine's output. `output-clamp`, when present, is last.
//!
//! So nothing is left unexplained: every step of every engine's integer is a named cause. The
//! JSON schema is documented in `docs/explain.md`.

mod json;
mod render;

pub use render::{html, text};
pub use serde_json::Value as JsonValue;

/// Pretty-printed JSON text.
pub fn to_json_string(v: &JsonValue) -> String {
    serde_json::to_string_pretty(v).expect("serializable")
}

use serde_json::Value;

use crate::accumulate::{gather_row, pack_weight_rows, saturated_pairs_in_rows};
use crate::engines::{
    self, Accumulators, EngineKind, EngineOutput, RunOptions, exact, fbgemm, float_path, onednn,
    onnx, onnxruntime, qnnpack, tflite, tflite_reference, x86,
};
use crate::error::{Error, Result};
use crate::geometry::ReductionOrder;
use crate::io::LoadedLayer;
use crate::isa::Isa;
use crate::layer::{Bias, ConvLayer};
use crate::requant::{ExactRequantizer, FixedPointRounding, RequantTrace, Requantizer};

/// The two runs explained when no engines are named: with a narrow accumulator, exact and
/// tflite-reference; float-path and fbgemm when PyTorch takes the layer; tflite-reference and
/// tflite for TFLite layers; else exact and the first ISA-dependent engine that accepts it.
pub fn default_runs(loaded: &LoadedLayer, options: &RunOptions) -> Result<Vec<EngineOutput>> {
    let layer = &loaded.layer;
    let run = |e: EngineKind| loaded.run(e, options);
    // A narrow accumulator: what it does to TFLite's reference kernels, against the exact result.
    if options.accumulator.is_some()
        && let Ok(reference) = run(EngineKind::TfliteReference)
    {
        return Ok(vec![run(EngineKind::Exact)?, reference]);
    }
    if let Ok(float_path) = run(EngineKind::FloatPath)
        && let Ok(fbgemm) = run(EngineKind::Fbgemm)
    {
        return Ok(vec![float_path, fbgemm]);
    }
    // TFLite layers: the reference kernels against the interpreter's default (XNNPACK).
    if layer.activation.is_some()
        && let (Ok(a), Ok(b)) = (run(EngineKind::TfliteReference), run(EngineKind::Tflite))
    {
        return Ok(vec![a, b]);
    }
    for e in EngineKind::ALL.into_iter().filter(|e| e.depends_on_isa()) {
        if let Ok(out) = run(e) {
            return Ok(vec![run(EngineKind::Exact)?, out]);
        }
    }
    Err(Error::invalid(
        "engines",
        "no saturating engine accepts this layer; name the two engines to explain (--engines)",
    ))
}

/// What moved an engine's integer away from the exact one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CauseKind {
    /// Two products summed in saturating int16 (`vpmaddubsw`) and clipped.
    PairSaturation,
    /// The float path's weights are float32 values, not the exact `s_w * (w - w_zp)`.
    WeightQuantization,
    /// The float path's activations are float32 values, not the exact `s_in * (a - a_zp)`.
    InputQuantization,
    /// The float path sums products in float32.
    FloatAccumulation,
    /// The engine rounds the float bias to an integer before adding it.
    BiasRounding,
    /// The engine's multiplier and float arithmetic round differently from exact arithmetic.
    RequantRounding,
    /// The value lies outside the output range (dtype, fused ReLU) and is clamped.
    OutputClamp,
    /// The engine's int32 accumulator wrapped around modulo 2^32.
    Int32Wrap,
    /// A modelled accumulator narrower than 32 bits (`--acc-bits`) saturated or wrapped.
    AccumulatorOverflow,
    /// The engine's SAME padding wrapped around (TFLite 2.21's XNNPACK): every tap read padding.
    SamePaddingUnderflow,
}

impl CauseKind {
    /// Every kind, in chain order.
    pub const ALL: [CauseKind; 10] = [
        CauseKind::PairSaturation,
        CauseKind::WeightQuantization,
        CauseKind::InputQuantization,
        CauseKind::FloatAccumulation,
        CauseKind::BiasRounding,
        CauseKind::RequantRounding,
        CauseKind::OutputClamp,
        CauseKind::Int32Wrap,
        CauseKind::AccumulatorOverflow,
        CauseKind::SamePaddingUnderflow,
    ];

    /// The kind's name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            CauseKind::PairSaturation => "pair-saturation",
            CauseKind::WeightQuantization => "weight-quantization",
            CauseKind::InputQuantization => "input-quantization",
            CauseKind::FloatAccumulation => "float-accumulation",
            CauseKind::BiasRounding => "bias-rounding",
            CauseKind::RequantRounding => "requant-rounding",
            CauseKind::OutputClamp => "output-clamp",
            CauseKind::Int32Wrap => "int32-wrap",
            CauseKind::AccumulatorOverflow => "accumulator-overflow",
            CauseKind::SamePaddingUnderflow => "same-padding-underflow",
        }
    }

    /// Whether the cause acts on the rounding step (it then has `acc_delta == 0` and `from` /
    /// `to` in its detail) rather than on the accumulator.
    pub fn is_rounding(self) -> bool {
        !matches!(
            self,
            CauseKind::PairSaturation
                | CauseKind::Int32Wrap
                | CauseKind::AccumulatorOverflow
                | CauseKind::SamePaddingUnderflow
        )
    }
}

/// One cause of one engine's deviation at one element.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub engine: EngineKind,
    pub kind: CauseKind,
    /// The cause's contribution to the engine's accumulator (0 for rounding causes).
    pub acc_delta: i64,
    /// The evidence.
    pub detail: Detail,
}

impl Cause {
    /// `(from, to)` of a rounding cause.
    pub fn step(&self) -> Option<(i64, i64)> {
        match &self.detail {
            Detail::Rounding { from, to, .. } => Some((*from, *to)),
            Detail::PairSaturation(_)
            | Detail::Int32Wrap { .. }
            | Detail::AccumulatorOverflow { .. }
            | Detail::SamePaddingUnderflow { .. } => None,
        }
    }
}

/// The evidence of a cause.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    /// The pair, its taps, its exact and its saturated sum.
    PairSaturation(crate::accumulate::SaturatedPair),
    /// The accumulator before it wrapped around modulo 2^32.
    Int32Wrap { unwrapped: i64 },
    /// A narrow accumulator: its width and overflow behaviour, the exact sum it should hold and
    /// what it holds (both with the bias).
    AccumulatorOverflow {
        width: crate::engines::narrow::AccumulatorWidth,
        exact: i64,
        narrowed: i64,
    },
    /// The spatial dimension whose SAME padding total was negative, and that total.
    SamePaddingUnderflow { dimension: &'static str, total: i64 },
    /// A rounding step from one unclamped integer to another, and why.
    Rounding {
        from: i64,
        to: i64,
        evidence: Evidence,
    },
}

/// What a rounding step rests on.
#[derive(Clone, Debug, PartialEq)]
pub enum Evidence {
    /// Float requantization: the engine's multiplier(s), the value it rounds and the exact one
    /// (output units, zero point included), and its rounding rule.
    Requant {
        multiplier: Vec<f32>,
        exact_multiplier: f64,
        engine_value: f64,
        exact_value: f64,
        rule: &'static str,
    },
    /// The bias rounded to an integer: its real value, its exact value in accumulator units, and
    /// the integer used.
    Bias {
        bias: f64,
        bias_in_acc_units: f64,
        bias_integer: i32,
    },
    /// The float path's float32 sum against the exact sum of its float32 products (real units),
    /// with the error and the distance to the nearest rounding boundary in output steps.
    FloatSum {
        float_value: f32,
        exact_value: f64,
        error_steps: f64,
        boundary_distance_steps: f64,
        error_bound_steps: f64,
    },
    /// Float32 dequantization of weights or inputs.
    Dequantization { tensor: &'static str },
    /// The output range.
    Clamp { range: (i32, i32), relu: bool },
}

/// One engine taking part in an explanation.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub engine: EngineKind,
    pub isa: Option<Isa>,
    /// The engine's route for this layer.
    pub route: String,
    pub warnings: Vec<String>,
}

impl EngineInfo {
    /// The engine's label in reports: its name, with the ISA when its integers depend on it.
    pub fn label(&self) -> String {
        self.engine.label(self.isa)
    }
}

/// One differing output element.
#[derive(Clone, Debug)]
pub struct ElementExplanation {
    /// `[n, c, h, w]`.
    pub index: [usize; 4],
    /// Each engine's output integer, in engine order.
    pub values: Vec<i32>,
    /// The exact accumulator `sum (a - a_zp)(w - w_zp)` (plus an int32 bias when the layer's
    /// bias is int32).
    pub exact_acc: i64,
    /// The exact real output in output units, zero point included, before rounding.
    pub exact_value: f64,
    /// The exact engine's output integer.
    pub exact_output: i32,
    /// Each engine's accumulator, in the same units, as the engine computes it.
    pub acc: Vec<i64>,
    /// Causes of every engine, each engine's in chain order.
    pub causes: Vec<Cause>,
}

/// The explanation of where two (or more) engines differ on a layer.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub layer: String,
    pub engines: Vec<EngineInfo>,
    /// `[N, OC, OH, OW]`.
    pub shape: [usize; 4],
    pub elements: Vec<ElementExplanation>,
}

/// Per engine and cause kind: how many differing elements it appears in, how many times, and the
/// total accumulator change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CauseCount {
    pub elements: usize,
    pub occurrences: usize,
    pub acc_delta: i64,
}

impl Explanation {
    /// Number of output elements.
    pub fn total(&self) -> usize {
        self.shape.iter().product()
    }

    /// Counts of each (engine position, kind), in engine order and [`CauseKind::ALL`] order;
    /// only pairs that occur. One pass over the causes.
    pub fn cause_counts(&self) -> Vec<(usize, CauseKind, CauseCount)> {
        let kinds = CauseKind::ALL.len();
        let slot = |kind: CauseKind| {
            CauseKind::ALL
                .iter()
                .position(|&k| k == kind)
                .expect("ALL lists every kind")
        };
        let mut counts = vec![CauseCount::default(); self.engines.len() * kinds];
        // The element each count last saw, to count elements once.
        let mut last_element = vec![usize::MAX; counts.len()];
        for (i, el) in self.elements.iter().enumerate() {
            for cause in &el.causes {
                let k = slot(cause.kind);
                for (e, _) in self
                    .engines
                    .iter()
                    .enumerate()
                    .filter(|(_, info)| info.engine == cause.engine)
                {
                    let at = e * kinds + k;
                    let c = &mut counts[at];
                    c.occurrences += 1;
                    c.acc_delta += cause.acc_delta;
                    if last_element[at] != i {
                        last_element[at] = i;
                        c.elements += 1;
                    }
                }
            }
        }
        counts
            .into_iter()
            .enumerate()
            .filter(|(_, c)| c.occurrences > 0)
            .map(|(at, c)| (at / kinds, CauseKind::ALL[at % kinds], c))
            .collect()
    }

    /// The largest difference between the first two engines, and where.
    pub fn largest_difference(&self) -> Option<(i64, [usize; 4])> {
        self.elements
            .iter()
            .map(|el| ((el.values[0] as i64 - el.values[1] as i64).abs(), el.index))
            .max_by_key(|&(d, _)| d)
    }

    /// The JSON form (schema in `docs/explain.md`).
    pub fn to_json(&self) -> Value {
        json::explanation(self)
    }

    /// [`Explanation::to_json`] without the elements (`elements` is empty): cheap for any size.
    pub fn to_json_header(&self) -> Value {
        json::header(self)
    }

    /// The JSON of the elements in `range` (an array, as in [`Explanation::to_json`]).
    pub fn elements_json(&self, range: std::ops::Range<usize>) -> Value {
        json::elements(self, range)
    }
}

/// The raw values an engine's int16 pairs are formed from (after any offset its kernel applies):
/// the input, the weight rows in the pairing order, and the value of padded taps.
struct PairSource {
    order: ReductionOrder,
    input: Vec<i32>,
    weight_rows: Vec<i32>,
    pad: i32,
}

impl PairSource {
    fn new(
        layer: &ConvLayer,
        order: ReductionOrder,
        activation_offset: i32,
        weight_offset: i32,
    ) -> Self {
        let weight: Vec<i32> = layer
            .weight
            .data
            .iter()
            .map(|&w| w + weight_offset)
            .collect();
        PairSource {
            order,
            input: layer
                .input
                .data
                .iter()
                .map(|&a| a + activation_offset)
                .collect(),
            weight_rows: pack_weight_rows(&layer.geometry, order, &weight),
            pad: layer.input.zero_point + activation_offset,
        }
    }
}

/// How an engine rounds, for tracing its chain (one per engine per explanation, so the size of
/// the largest variant does not matter).
#[allow(clippy::large_enum_variant)]
enum Rounding<'a> {
    Exact,
    FloatPath(float_path::FloatPathAnalysis<'a>),
    /// FBGEMM's float-bias requantization.
    FloatBias(crate::requant::FloatBiasFp32Requantizer),
    /// An integer bias and a float32 multiplier; `with_integer_bias` is the exact rounding with
    /// that integer bias when the engine derived it from a float bias (qnnpack).
    IntegerBias {
        requant: crate::requant::Fp32Requantizer,
        with_integer_bias: Option<ExactRequantizer>,
    },
    /// oneDNN's float post-ops.
    PostOps(crate::requant::FloatPostOpsRequantizer),
    /// The ONNX reference's float64 product (`None` for int32 outputs).
    Float64(Option<crate::requant::Float64ProductRequantizer>),
    /// TFLite's fixed-point multiplier and shift.
    FixedPoint(crate::requant::FixedPointRequantizer),
}

/// How one engine's chain is traced: where its pairs saturate, and how it rounds.
struct Tracer<'a> {
    pairs: Option<PairSource>,
    rounding: Rounding<'a>,
    /// The narrow accumulator the engine was run with, if any.
    narrow: Option<crate::engines::narrow::AccumulatorWidth>,
    /// The engine's SAME padding wraps around in this dimension (total given).
    padding_underflow: Option<(&'static str, i64)>,
}

impl<'a> Tracer<'a> {
    fn new(layer: &'a ConvLayer, out: &EngineOutput, options: &RunOptions) -> Result<Tracer<'a>> {
        let mut tracer = Tracer::for_engine(layer, out)?;
        if out.engine.models_accumulator_width() {
            tracer.narrow = options.accumulator;
        }
        if out.engine == EngineKind::Tflite {
            tracer.padding_underflow = tflite::same_padding_underflow(layer);
        }
        Ok(tracer)
    }

    fn for_engine(layer: &'a ConvLayer, out: &EngineOutput) -> Result<Tracer<'a>> {
        let scales = layer.scales(out.engine.name());
        let isa = out.isa.unwrap_or_else(Isa::host);
        let plain = |rounding| Tracer {
            pairs: None,
            rounding,
            narrow: None,
            padding_underflow: None,
        };
        Ok(match out.engine {
            EngineKind::Exact => plain(Rounding::Exact),
            EngineKind::TfliteReference => plain(Rounding::FixedPoint(
                tflite_reference::requantizer(layer, FixedPointRounding::Double)?,
            )),
            EngineKind::TfliteReferenceSingleRounding => plain(Rounding::FixedPoint(
                tflite_reference::requantizer(layer, FixedPointRounding::Single)?,
            )),
            EngineKind::Tflite => plain(Rounding::IntegerBias {
                requant: tflite::requantizer(layer)?,
                with_integer_bias: None,
            }),
            EngineKind::Onnx => plain(Rounding::Float64(
                scales
                    .ok()
                    .map(|s| onnx::requantizer(layer, s.input, s.output)),
            )),
            EngineKind::FloatPath => plain(Rounding::FloatPath(
                float_path::FloatPathAnalysis::new(layer)?,
            )),
            EngineKind::Qnnpack => {
                let s = scales?;
                let requant = qnnpack::requantizer(layer, s.input, s.output)?;
                let with_integer_bias = ExactRequantizer::new(
                    s.input,
                    |oc| layer.weight.quant.scale(oc),
                    s.output,
                    Some(&Bias::Int32(requant.bias.clone())),
                    layer.geometry.out_channels,
                    layer.output.zero_point,
                    layer.output_range(),
                );
                plain(Rounding::IntegerBias {
                    requant,
                    with_integer_bias: Some(with_integer_bias),
                })
            }
            EngineKind::OnnxRuntime => {
                let model = onnxruntime::accumulation(layer, isa)?;
                Tracer {
                    pairs: model.saturating.then(|| {
                        PairSource::new(
                            layer,
                            model.order,
                            model.activation_offset,
                            model.weight_offset,
                        )
                    }),
                    rounding: match scales {
                        Ok(s) if !layer.is_integer_output() => Rounding::IntegerBias {
                            requant: onnxruntime::requantizer(layer, s.input, s.output),
                            with_integer_bias: None,
                        },
                        _ => Rounding::Exact,
                    },
                    narrow: None,
                    padding_underflow: None,
                }
            }
            EngineKind::Fbgemm | EngineKind::X86 => {
                let s = scales?;
                let onednn_route = out.engine == EngineKind::X86
                    && x86::route(layer, isa) == x86::X86Route::Onednn;
                if onednn_route {
                    plain(Rounding::PostOps(onednn::requantizer(
                        layer, s.input, s.output,
                    )))
                } else {
                    let path = fbgemm::FbgemmPath::select(&layer.geometry, isa);
                    Tracer {
                        pairs: path
                            .saturates(isa)
                            .then(|| PairSource::new(layer, ReductionOrder::TapMajor, 0, 0)),
                        rounding: Rounding::FloatBias(fbgemm::requantizer(
                            layer, path, s.input, s.output,
                        )),
                        narrow: None,
                        padding_underflow: None,
                    }
                }
            }
        })
    }
}

/// Pushes a rounding cause if the step changes the integer; returns the new chain position.
fn step(
    causes: &mut Vec<Cause>,
    engine: EngineKind,
    kind: CauseKind,
    from: i64,
    to: i64,
    evidence: Evidence,
) -> i64 {
    if from != to {
        causes.push(Cause {
            engine,
            kind,
            acc_delta: 0,
            detail: Detail::Rounding { from, to, evidence },
        });
    }
    to
}

/// The evidence of a float requantizer's rounding.
fn requant_evidence(
    layer: &ConvLayer,
    oc: usize,
    multiplier: Vec<f32>,
    exact: &RequantTrace,
    engine: &RequantTrace,
    rule: &'static str,
) -> Evidence {
    Evidence::Requant {
        multiplier,
        exact_multiplier: layer.input.scale.unwrap_or(1.0) * layer.weight.quant.scale(oc)
            / layer.output.scale.unwrap_or(1.0),
        engine_value: engine.value,
        exact_value: exact.value,
        rule,
    }
}

/// The output-clamp step of a trace.
fn clamp_step(
    causes: &mut Vec<Cause>,
    engine: EngineKind,
    layer: &ConvLayer,
    from: i64,
    output: i32,
) -> i64 {
    let evidence = Evidence::Clamp {
        range: layer.output_range(),
        relu: layer.relu,
    };
    step(
        causes,
        engine,
        CauseKind::OutputClamp,
        from,
        output as i64,
        evidence,
    )
}

/// The causes of engine `out` at output element `i`.
#[allow(clippy::too_many_arguments)]
fn engine_causes(
    layer: &ConvLayer,
    out: &EngineOutput,
    tracer: &Tracer,
    ideal: Option<&ExactRequantizer>,
    i: usize,
    acc: i64,
    exact_acc: i64,
    causes: &mut Vec<Cause>,
) -> Result<()> {
    let first = causes.len();
    let g = &layer.geometry;
    let coords = g.output_coords(i);
    let oc = coords[1];
    let engine = out.engine;
    let output = out.values[i];
    // Accumulator causes.
    if let Some(src) = &tracer.pairs {
        let [n, _, oh, ow] = coords;
        let k_len = g.reduction_len();
        let mut row = vec![src.pad; k_len];
        let grp = oc / g.group_out_channels();
        gather_row(
            g,
            src.order,
            &src.input,
            src.pad,
            [n, grp, oh, ow],
            &mut row,
        );
        let weights = &src.weight_rows[oc * k_len..(oc + 1) * k_len];
        for p in saturated_pairs_in_rows(g, src.order, &row, weights, coords) {
            causes.push(Cause {
                engine,
                kind: CauseKind::PairSaturation,
                acc_delta: p.clipped(),
                detail: Detail::PairSaturation(p),
            });
        }
    }
    // Wrapped-around SAME padding drops every tap.
    if let Some((dimension, total)) = tracer.padding_underflow {
        let explained = exact_acc + causes[first..].iter().map(|c| c.acc_delta).sum::<i64>();
        if acc != explained {
            causes.push(Cause {
                engine,
                kind: CauseKind::SamePaddingUnderflow,
                acc_delta: acc - explained,
                detail: Detail::SamePaddingUnderflow { dimension, total },
            });
        }
    }
    // A narrow accumulator accounts for the whole of its difference from the exact sum.
    let explained = exact_acc + causes[first..].iter().map(|c| c.acc_delta).sum::<i64>();
    if let (Some(width), true) = (tracer.narrow, acc != explained) {
        let bias = match &layer.bias {
            Some(Bias::Int32(b)) => b[oc] as i64,
            _ => 0,
        };
        causes.push(Cause {
            engine,
            kind: CauseKind::AccumulatorOverflow,
            acc_delta: acc - explained,
            detail: Detail::AccumulatorOverflow {
                width,
                exact: exact_acc + bias,
                narrowed: acc + bias,
            },
        });
    }
    // Whatever the causes so far leave unexplained is a wrap of the int32 accumulator.
    let explained = exact_acc + causes[first..].iter().map(|c| c.acc_delta).sum::<i64>();
    if acc != explained {
        debug_assert_eq!((acc - explained).rem_euclid(1 << 32), 0);
        causes.push(Cause {
            engine,
            kind: CauseKind::Int32Wrap,
            acc_delta: acc - explained,
            detail: Detail::Int32Wrap {
                unwrapped: explained,
            },
        });
    }
    // An int32 output is the accumulator itself (ConvInteger takes no bias).
    let Some(ideal) = ideal else {
        debug_assert_eq!(acc, output as i64);
        return Ok(());
    };
    let ideal_trace = ideal.trace(acc, oc);
    let start = ideal_trace.unclamped;
    // The end of every chain through an engine's own requantizer: `requant-rounding` from
    // `from` to the engine's unclamped integer, then `output-clamp` to its output.
    let requant_steps = |causes: &mut Vec<Cause>,
                         from: i64,
                         exact: &RequantTrace,
                         t: &RequantTrace,
                         multiplier: Vec<f32>,
                         rule: &'static str| {
        let evidence = requant_evidence(layer, oc, multiplier, exact, t, rule);
        let at = step(
            causes,
            engine,
            CauseKind::RequantRounding,
            from,
            t.unclamped,
            evidence,
        );
        clamp_step(causes, engine, layer, at, output);
    };
    match &tracer.rounding {
        Rounding::Exact => {
            clamp_step(causes, engine, layer, start, output);
        }
        Rounding::FloatPath(analysis) => {
            let e = analysis.element(i);
            let mut at = start;
            at = step(
                causes,
                engine,
                CauseKind::WeightQuantization,
                at,
                e.with_float_weights,
                Evidence::Dequantization { tensor: "weight" },
            );
            at = step(
                causes,
                engine,
                CauseKind::InputQuantization,
                at,
                e.with_float_inputs,
                Evidence::Dequantization { tensor: "input" },
            );
            let so = layer.output.scale.unwrap_or(1.0);
            at = step(
                causes,
                engine,
                CauseKind::FloatAccumulation,
                at,
                e.with_float_sum,
                Evidence::FloatSum {
                    float_value: e.float_value,
                    exact_value: e.boundary.exact,
                    error_steps: (e.float_value as f64 - e.boundary.exact) / so,
                    boundary_distance_steps: e.boundary.boundary_distance,
                    error_bound_steps: e.boundary.error_bound,
                },
            );
            let inv = 1.0f32 / so as f32;
            let zp = layer.output.zero_point as f64;
            at = step(
                causes,
                engine,
                CauseKind::RequantRounding,
                at,
                e.quantized,
                Evidence::Requant {
                    multiplier: vec![inv],
                    exact_multiplier: 1.0 / so,
                    engine_value: (e.float_value * inv) as f64 + zp,
                    exact_value: e.float_value as f64 / so + zp,
                    rule: "x * f32(1 / s_out), ties to even, zero point added after rounding",
                },
            );
            clamp_step(causes, engine, layer, at, output);
        }
        Rounding::FloatBias(requant) => {
            let t = requant.trace(acc as i32, oc);
            let m = requant.multipliers[oc];
            requant_steps(
                causes,
                start,
                &ideal_trace,
                &t,
                vec![m],
                "f32(acc) + bias term, times f32 multiplier, cvtps2dq (ties to even), zero point added after rounding",
            );
        }
        Rounding::IntegerBias {
            requant,
            with_integer_bias,
        } => {
            let (at, with_bias) = match with_integer_bias {
                Some(exact_with_bias) => {
                    let with_bias = exact_with_bias.trace(acc, oc);
                    let real_bias = match &layer.bias {
                        Some(Bias::Float32(b)) => b[oc] as f64,
                        _ => 0.0,
                    };
                    let acc_scale = layer.input.scale.unwrap_or(1.0) * layer.weight.quant.scale(oc);
                    let at = step(
                        causes,
                        engine,
                        CauseKind::BiasRounding,
                        start,
                        with_bias.unclamped,
                        Evidence::Bias {
                            bias: real_bias,
                            bias_in_acc_units: real_bias / acc_scale,
                            bias_integer: requant.bias[oc],
                        },
                    );
                    (at, with_bias)
                }
                None => (start, ideal_trace),
            };
            let t = requant.trace(acc as i32, oc);
            requant_steps(
                causes,
                at,
                &with_bias,
                &t,
                vec![requant.multipliers[oc]],
                "f32(acc + integer bias) times f32 multiplier, ties to even, zero point added after rounding",
            );
        }
        Rounding::PostOps(requant) => {
            let t = requant.trace(acc as i32, oc);
            requant_steps(
                causes,
                start,
                &ideal_trace,
                &t,
                vec![
                    requant.source_scale,
                    requant.weight_scales[oc],
                    requant.output_reciprocal,
                ],
                "f32(acc) * source scale * weight scale + bias, times f32(1/s_out), plus zero point in float, ties to even",
            );
        }
        Rounding::FixedPoint(requant) => {
            let t = requant.trace(acc as i32, oc);
            requant_steps(
                causes,
                start,
                &ideal_trace,
                &t,
                vec![requant.real_multiplier(oc) as f32],
                match requant.rounding {
                    FixedPointRounding::Double => {
                        "(acc + bias) times a Q31 multiplier and a shift: rounding doubling high multiply (ties up), then rounding right shift (ties away from zero)"
                    }
                    FixedPointRounding::Single => {
                        "(acc + bias) times a Q31 multiplier, one rounding right shift, half up"
                    }
                },
            );
        }
        Rounding::Float64(requant) => {
            let requant = requant
                .as_ref()
                .expect("a quantized output has a requantizer");
            let t = requant.trace(acc as i32, oc);
            requant_steps(
                causes,
                start,
                &ideal_trace,
                &t,
                vec![requant.multipliers[oc]],
                "f64(acc + bias) * f64(f32 multiplier) + zero point in float64, half to even",
            );
        }
    }
    Ok(())
}

/// Runs `engines` on `layer` and explains every output element where any two differ.
/// `progress(done, total)` is called as elements are explained.
pub fn explain(
    layer: &ConvLayer,
    engine_kinds: &[EngineKind],
    options: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Explanation> {
    let outputs: Vec<EngineOutput> = engine_kinds
        .iter()
        .map(|&e| engines::run(e, layer, options))
        .collect::<Result<_>>()?;
    explain_outputs(layer, &outputs, options, progress)
}

/// Explains every output element where any two of `outputs` (engine runs on `layer`) differ.
/// `options` says how to compute the exact accumulators when no output holds them.
pub fn explain_outputs(
    layer: &ConvLayer,
    outputs: &[EngineOutput],
    options: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Explanation> {
    let g = &layer.geometry;
    let differing: Vec<usize> = (0..layer.output_len())
        .filter(|&i| outputs.iter().any(|o| o.values[i] != outputs[0].values[i]))
        .collect();
    let engines = outputs
        .iter()
        .map(|o| EngineInfo {
            engine: o.engine,
            isa: o.isa,
            route: o.path.clone(),
            warnings: o.warnings.clone(),
        })
        .collect();
    if differing.is_empty() {
        return Ok(Explanation {
            layer: layer.name.clone(),
            engines,
            shape: g.output_shape(),
            elements: Vec::new(),
        });
    }
    let exact_acc = match outputs
        .iter()
        .find_map(|o| match (o.engine, &o.accumulators) {
            (EngineKind::Exact, Accumulators::Exact(acc)) => Some(acc),
            _ => None,
        }) {
        Some(acc) => acc.clone(),
        None => exact::accumulators(layer, options)?,
    };
    let int_bias = |oc: usize| match &layer.bias {
        Some(Bias::Int32(b)) => b[oc] as i64,
        _ => 0,
    };
    let ideal = if layer.is_integer_output() {
        None
    } else {
        Some(exact::requantizer(layer)?)
    };
    let tracers: Vec<Tracer> = outputs
        .iter()
        .map(|o| Tracer::new(layer, o, options))
        .collect::<Result<_>>()?;
    let explain_one = |i: usize| -> Result<ElementExplanation> {
        let oc = g.output_coords(i)[1];
        let exact = exact_acc[i];
        let mut causes = Vec::new();
        let mut accs = Vec::with_capacity(outputs.len());
        for (out, tracer) in outputs.iter().zip(&tracers) {
            let acc = match &out.accumulators {
                Accumulators::Exact(v) => v[i],
                Accumulators::Int32(v) => v[i] as i64,
                Accumulators::Float(_) => exact,
            };
            engine_causes(
                layer,
                out,
                tracer,
                ideal.as_ref(),
                i,
                acc,
                exact,
                &mut causes,
            )?;
            accs.push(acc);
        }
        Ok(ElementExplanation {
            index: g.output_coords(i),
            values: outputs.iter().map(|o| o.values[i]).collect(),
            exact_acc: exact + int_bias(oc),
            exact_value: ideal
                .as_ref()
                .map_or((exact + int_bias(oc)) as f64, |r| r.real_value(exact, oc)),
            exact_output: ideal
                .as_ref()
                .map_or((exact + int_bias(oc)) as i32, |r| r.requantize(exact, oc)),
            acc: accs.iter().map(|&a| a + int_bias(oc)).collect(),
            causes,
        })
    };
    // Elements are independent: chunks of them in parallel, in order, with progress between.
    let threads = options.resolve_threads(layer)?;
    let pool = if threads > 1 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .ok()
    } else {
        None
    };
    let mut elements = Vec::with_capacity(differing.len());
    for (c, chunk) in differing.chunks(4096).enumerate() {
        progress(c * 4096, differing.len());
        let part: Vec<Result<ElementExplanation>> = match &pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                chunk.par_iter().map(|&i| explain_one(i)).collect()
            }),
            None => chunk.iter().map(|&i| explain_one(i)).collect(),
        };
        for element in part {
            elements.push(element?);
        }
    }
    progress(differing.len(), differing.len());
    Ok(Explanation {
        layer: layer.name.clone(),
        engines,
        shape: g.output_shape(),
        elements,
    })
}

//! Saturation risk: which int16 pair sums of a layer can leave the int16 range on an engine and
//! ISA, found from the weights and the input range alone, without running the convolution.
//!
//! Engines that multiply u8 activations by s8 weights with `vpmaddubsw` add each pair of
//! consecutive products (taps `2p`, `2p + 1` of a group's reduction order) in saturating int16.
//! For one output position every tap is either inside the image (its activation anywhere in the
//! input range) or in the padding (the input zero point), and the taps of one output element are
//! distinct input elements, so each pair's sum ranges independently over an interval whose ends
//! are attained. The analysis walks every distinct padding pattern of the layer's output
//! positions; its verdict is exact: a pair can saturate if and only if some input in the range
//! makes it saturate, and the worst accumulator error it reports is attained.

use std::fmt::Write;

use crate::accumulate::weight_row;
use crate::dtype::DType;
use crate::engines::{EngineKind, fbgemm, onnxruntime, x86};
use crate::error::{Error, Result};
use crate::geometry::{ConvGeometry, ReductionOrder};
use crate::isa::Isa;
use crate::layer::ConvLayer;

const I16_MAX: i64 = i16::MAX as i64;
const I16_MIN: i64 = i16::MIN as i64;

/// How an engine accumulates a layer on an ISA.
#[derive(Clone, Debug, PartialEq)]
pub struct AccumulationModel {
    pub engine: EngineKind,
    pub isa: Isa,
    /// The kernel or route, in words.
    pub route: String,
    /// Whether products are summed in saturating int16 pairs.
    pub saturating: bool,
    /// The order taps are paired in.
    pub order: ReductionOrder,
    /// Offsets the kernel adds to raw activations and weights before multiplying.
    pub activation_offset: i32,
    pub weight_offset: i32,
}

/// The accumulation `engine` performs on `layer` modelled on `isa`; refuses engines that do not
/// multiply u8 by s8 in pairs, and layers the engine refuses.
pub fn accumulation_model(
    layer: &ConvLayer,
    engine: EngineKind,
    isa: Isa,
) -> Result<AccumulationModel> {
    // The bias does not take part in pair saturation: an int32 bias (ONNX) is checked as the
    // float bias PyTorch would take.
    let pytorch_check = |engine: EngineKind| -> Result<()> {
        if let Some(crate::layer::Bias::Int32(_)) = layer.bias {
            let mut view = layer.clone();
            view.bias = None;
            crate::engines::check_pytorch_layer(engine.name(), &view)
        } else {
            crate::engines::check_pytorch_layer(engine.name(), layer)
        }
    };
    let fbgemm_model = |engine: EngineKind| -> Result<AccumulationModel> {
        pytorch_check(engine)?;
        let path = fbgemm::FbgemmPath::select(&layer.geometry, isa);
        Ok(AccumulationModel {
            engine,
            isa,
            route: format!("FBGEMM {} kernel", path.name()),
            saturating: path.saturates(isa),
            order: ReductionOrder::TapMajor,
            activation_offset: 0,
            weight_offset: 0,
        })
    };
    match engine {
        EngineKind::Fbgemm => fbgemm_model(engine),
        EngineKind::X86 => match x86::route(layer, isa) {
            x86::X86Route::Fbgemm => fbgemm_model(engine),
            x86::X86Route::Onednn => {
                pytorch_check(engine)?;
                Ok(AccumulationModel {
                    engine,
                    isa,
                    route: "oneDNN (exact int32 with VNNI)".to_string(),
                    saturating: false,
                    order: ReductionOrder::TapMajor,
                    activation_offset: 0,
                    weight_offset: 0,
                })
            }
        },
        EngineKind::OnnxRuntime => {
            crate::engines::check_onnx_layer(engine.name(), layer)?;
            let m = onnxruntime::accumulation(layer, isa)?;
            Ok(AccumulationModel {
                engine,
                isa,
                route: format!("ONNX Runtime {}", m.path.name()),
                saturating: m.saturating,
                order: m.order,
                activation_offset: m.activation_offset,
                weight_offset: m.weight_offset,
            })
        }
        other => Err(Error::invalid(
            "engine",
            format!("check models the saturating engines (fbgemm, x86, onnxruntime), not {other}"),
        )),
    }
}

/// The engine `check` models when none is named: ONNX Runtime for ONNX models and their nodes
/// (`spec` is a LAYER argument), fbgemm otherwise.
pub fn default_engine(spec: &str) -> EngineKind {
    if crate::io::split_onnx_spec(spec).is_some() {
        EngineKind::OnnxRuntime
    } else {
        EngineKind::Fbgemm
    }
}

/// A pair of taps that can saturate.
#[derive(Clone, Debug, PartialEq)]
pub struct PairRisk {
    pub pair: usize,
    /// `(k, [oc, c, kh, kw], raw weight)` of each tap.
    pub taps: Vec<(usize, [usize; 4], i32)>,
    /// The largest and smallest pair sum over the input range and every padding pattern.
    pub max_sum: i64,
    pub min_sum: i64,
}

/// Saturation risk of one output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRisk {
    pub oc: usize,
    /// Largest and smallest pair sum of the channel.
    pub max_sum: i64,
    pub min_sum: i64,
    /// Pairs that can leave the int16 range.
    pub risky_pairs: Vec<PairRisk>,
    /// The largest |accumulator error| saturation can cause in one output element.
    pub worst_error_acc: i64,
    /// The same in output steps (times `s_in * s_w / s_out`).
    pub worst_error_steps: f64,
    /// On the layer's own input: elements with a saturated pair, saturated pairs, largest
    /// |accumulator error|.
    pub actual: Option<(usize, usize, i64)>,
}

/// The result of a saturation check.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub layer: String,
    pub model: AccumulationModel,
    /// The activation range analysed (raw integers) and whether it was given.
    pub input_range: (i32, i32),
    pub range_given: bool,
    pub input_zero_point: i32,
    pub channels: Vec<ChannelRisk>,
    /// Whether the layer's own input was analysed too.
    pub has_actual: bool,
    /// What would make saturation impossible.
    pub fixes: Vec<String>,
}

impl CheckReport {
    /// Whether some input in the range saturates a pair.
    pub fn range_can_saturate(&self) -> bool {
        self.model.saturating && self.channels.iter().any(|c| !c.risky_pairs.is_empty())
    }

    /// Whether the layer can saturate: some input in the range, or its own input, does.
    pub fn can_saturate(&self) -> bool {
        self.range_can_saturate() || self.saturates_on_input() == Some(true)
    }

    /// Whether the layer's own input saturates a pair (when analysed).
    pub fn saturates_on_input(&self) -> Option<bool> {
        self.has_actual.then(|| {
            self.model.saturating
                && self
                    .channels
                    .iter()
                    .any(|c| c.actual.is_some_and(|a| a.1 > 0))
        })
    }
}

/// The distinct padding patterns along one axis: for each output coordinate, which kernel taps
/// fall outside the input.
fn padding_patterns(
    out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    before: usize,
    size: usize,
) -> Vec<Vec<bool>> {
    let mut patterns: Vec<Vec<bool>> = Vec::new();
    for o in 0..out {
        let p: Vec<bool> = (0..kernel)
            .map(|r| {
                let i = (o * stride + r * dilation) as i64 - before as i64;
                i < 0 || i >= size as i64
            })
            .collect();
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    patterns
}

/// The interval of one tap's product: padded taps hold the zero point.
fn product_range(w: i64, padded: bool, lo: i64, hi: i64, zp: i64) -> (i64, i64) {
    if padded {
        (zp * w, zp * w)
    } else if w >= 0 {
        (lo * w, hi * w)
    } else {
        (hi * w, lo * w)
    }
}

/// `saturated(s) - s` at the ends of a sum interval: the accumulator change saturation causes is
/// between `clip(max)` (<= 0) and `clip(min)` (>= 0).
fn clip(s: i64) -> i64 {
    s.clamp(I16_MIN, I16_MAX) - s
}

/// Analyses `g`'s channels for raw weights `weight` (OIHW) paired in `order`, activations in
/// `[lo, hi]` and the zero point `zp` in padded taps (all as the kernel multiplies them).
fn analyse(
    g: &ConvGeometry,
    order: ReductionOrder,
    weight: &[i32],
    lo: i64,
    hi: i64,
    zp: i64,
) -> Vec<(i64, i64, Vec<PairRisk>, i64)> {
    let rows = padding_patterns(
        g.out_h(),
        g.kernel[0],
        g.stride[0],
        g.dilation[0],
        g.padding.top,
        g.in_h,
    );
    let cols = padding_patterns(
        g.out_w(),
        g.kernel[1],
        g.stride[1],
        g.dilation[1],
        g.padding.left,
        g.in_w,
    );
    let k_len = g.reduction_len();
    (0..g.out_channels)
        .map(|oc| {
            let w = weight_row(g, order, weight, oc);
            let (mut max_sum, mut min_sum, mut worst) = (i64::MIN, i64::MAX, 0i64);
            let mut risky: Vec<PairRisk> = Vec::new();
            for rp in &rows {
                for cp in &cols {
                    let (mut down, mut up) = (0i64, 0i64);
                    for p in 0..k_len.div_ceil(2) {
                        let (mut s_lo, mut s_hi) = (0i64, 0i64);
                        for (k, &wk) in w.iter().enumerate().skip(2 * p).take(2) {
                            let (r, s, _) = g.reduction_index(order, k);
                            let (a, b) = product_range(wk as i64, rp[r] || cp[s], lo, hi, zp);
                            s_lo += a;
                            s_hi += b;
                        }
                        max_sum = max_sum.max(s_hi);
                        min_sum = min_sum.min(s_lo);
                        down += clip(s_hi);
                        up += clip(s_lo);
                        if s_hi > I16_MAX || s_lo < I16_MIN {
                            match risky.iter_mut().find(|r| r.pair == p) {
                                Some(r) => {
                                    r.max_sum = r.max_sum.max(s_hi);
                                    r.min_sum = r.min_sum.min(s_lo);
                                }
                                None => risky.push(PairRisk {
                                    pair: p,
                                    taps: (2 * p..(2 * p + 2).min(k_len))
                                        .map(|k| {
                                            let (r, s, c) = g.reduction_index(order, k);
                                            (k, [oc, c, r, s], w[k])
                                        })
                                        .collect(),
                                    max_sum: s_hi,
                                    min_sum: s_lo,
                                }),
                            }
                        }
                    }
                    worst = worst.max(down.abs()).max(up.abs());
                }
            }
            risky.sort_by_key(|r| r.pair);
            (max_sum, min_sum, risky, worst)
        })
        .collect()
}

/// Per output channel on the layer's own input: (elements with a saturated pair, saturated
/// pairs, largest |accumulator change|).
fn actual_saturation(layer: &ConvLayer, model: &AccumulationModel) -> Vec<(usize, usize, i64)> {
    let g = &layer.geometry;
    let k_len = g.reduction_len();
    let order = model.order;
    let input: Vec<i32> = layer
        .input
        .data
        .iter()
        .map(|&a| a + model.activation_offset)
        .collect();
    let weight: Vec<i32> = layer
        .weight
        .data
        .iter()
        .map(|&w| w + model.weight_offset)
        .collect();
    let pad = layer.input.zero_point + model.activation_offset;
    let rows = crate::accumulate::pack_weight_rows(g, order, &weight);
    let mut per_channel = vec![(0usize, 0usize, 0i64); g.out_channels];
    let mut row = vec![0i32; k_len];
    let [n_len, _, oh_len, ow_len] = g.output_shape();
    let ocg = g.group_out_channels();
    for n in 0..n_len {
        for grp in 0..g.groups {
            for oh in 0..oh_len {
                for ow in 0..ow_len {
                    crate::accumulate::gather_row(
                        g,
                        order,
                        &input,
                        pad,
                        [n, grp, oh, ow],
                        &mut row,
                    );
                    for oc in grp * ocg..(grp + 1) * ocg {
                        let w = &rows[oc * k_len..(oc + 1) * k_len];
                        let (mut pairs, mut change) = (0usize, 0i64);
                        for (a, b) in row.chunks(2).zip(w.chunks(2)) {
                            let s: i64 = a.iter().zip(b).map(|(&x, &y)| x as i64 * y as i64).sum();
                            let c = clip(s);
                            if c != 0 {
                                pairs += 1;
                                change += c;
                            }
                        }
                        let entry = &mut per_channel[oc];
                        if pairs > 0 {
                            entry.0 += 1;
                            entry.1 += pairs;
                            entry.2 = entry.2.max(change.abs());
                        }
                    }
                }
            }
        }
    }
    per_channel
}

/// Checks `layer` for int16 pair saturation on `engine` modelled on `isa`. Activations are taken
/// over `input_range` (raw integers) when given, else over the input dtype's full range; the
/// layer's own input is analysed as well when `use_input` is set.
pub fn check(
    layer: &ConvLayer,
    engine: EngineKind,
    isa: Isa,
    input_range: Option<(i32, i32)>,
    use_input: bool,
) -> Result<CheckReport> {
    let model = accumulation_model(layer, engine, isa)?;
    let dtype = layer.input.dtype;
    let (lo, hi) = match input_range {
        Some((lo, hi)) => {
            if lo > hi || !dtype.contains(lo as i64) || !dtype.contains(hi as i64) {
                return Err(Error::invalid(
                    "--input-range",
                    format!(
                        "[{lo}, {hi}] is not a range inside {dtype} [{}, {}]",
                        dtype.min(),
                        dtype.max()
                    ),
                ));
            }
            (lo, hi)
        }
        None => (dtype.min() as i32, dtype.max() as i32),
    };
    let g = &layer.geometry;
    let (ao, wo) = (model.activation_offset as i64, model.weight_offset);
    let weight: Vec<i32> = layer.weight.data.iter().map(|&w| w + wo).collect();
    let zp = layer.input.zero_point as i64 + ao;
    let analysed = analyse(g, model.order, &weight, lo as i64 + ao, hi as i64 + ao, zp);
    let actual = use_input.then(|| actual_saturation(layer, &model));
    let step = |oc: usize| match (
        layer.input.scale,
        layer.weight.quant.scales.as_ref(),
        layer.output.scale,
    ) {
        (Some(si), Some(_), Some(so)) => si * layer.weight.quant.scale(oc) / so,
        _ => 1.0,
    };
    let channels = analysed
        .into_iter()
        .enumerate()
        .map(|(oc, (max_sum, min_sum, risky_pairs, worst))| ChannelRisk {
            oc,
            max_sum,
            min_sum,
            worst_error_acc: worst,
            worst_error_steps: worst as f64 * step(oc),
            risky_pairs,
            actual: actual.as_ref().map(|a| a[oc]),
        })
        .collect();
    let mut report = CheckReport {
        layer: layer.name.clone(),
        model,
        input_range: (lo, hi),
        range_given: input_range.is_some(),
        input_zero_point: layer.input.zero_point,
        channels,
        has_actual: use_input,
        fixes: Vec::new(),
    };
    if report.can_saturate() {
        report.fixes = fixes(layer, &report.model);
    }
    debug_assert!(report.saturates_on_input() != Some(true) || report.model.saturating);
    Ok(report)
}

/// Concrete ways to make saturation impossible for this layer.
fn fixes(layer: &ConvLayer, model: &AccumulationModel) -> Vec<String> {
    let (engine, isa) = (model.engine, model.isa);
    let mut out = Vec::new();
    let pytorch = matches!(engine, EngineKind::Fbgemm | EngineKind::X86);
    if pytorch && layer.input.dtype == DType::Uint8 {
        let zp = layer.input.zero_point.min(127) as i64;
        let safe = analyse(&layer.geometry, model.order, &layer.weight.data, 0, 127, zp)
            .iter()
            .all(|(_, _, risky, _)| risky.is_empty());
        if safe {
            out.push(
                "Quantize activations to 7 bits, [0, 127] (PyTorch: reduce_range=True in the activation \
                 observer, the default qconfig of the fbgemm and x86 engines): every pair then stays \
                 within int16 (|a0*w0 + a1*w1| <= 2 * 127 * 128 = 32512)."
                    .to_string(),
            );
        }
    }
    if engine == EngineKind::OnnxRuntime {
        out.push(if layer.weight.dtype == DType::Uint8 {
            "Quantize the weights to 7 bits, [0, 127] (onnxruntime.quantization: reduce_range=True): \
             every pair then stays within int16 (|a0*w0 + a1*w1| <= 2 * 128 * 127 = 32512)."
                .to_string()
        } else {
            "Quantize the weights to 7 bits, [-64, 63] (onnxruntime.quantization: reduce_range=True): \
             every pair then stays within int16 (|a0*w0 + a1*w1| <= 2 * 255 * 64 = 32640)."
                .to_string()
        });
        if layer.weight.dtype == DType::Int8 && layer.input.dtype == DType::Uint8 {
            out.push(
                "Quantize the weights as uint8 (U8U8, weight_type=QuantType.QUInt8): ONNX Runtime's \
                 u8 x u8 kernels widen to 16 bits and accumulate exactly."
                    .to_string(),
            );
        }
    }
    if isa != Isa::Avx512Vnni {
        match accumulation_model(layer, engine, Isa::Avx512Vnni) {
            Ok(m) if !m.saturating => out.push(format!(
                "Run on a CPU with AVX-512-VNNI (Intel Cascade Lake or later, AMD Zen 4 or later{}): \
                 {engine} takes the {} there, which accumulates exactly.",
                if engine == EngineKind::OnnxRuntime {
                    "; ONNX Runtime also accumulates exactly with AVX-VNNI, e.g. Intel Alder Lake"
                } else {
                    ""
                },
                m.route
            )),
            Ok(m) => out.push(format!(
                "A VNNI CPU does not help this layer: {engine} uses the {} there, which saturates on \
                 every CPU.",
                m.route
            )),
            Err(_) => {}
        }
    } else if engine == EngineKind::X86 && !layer.weight.quant.is_symmetric() {
        out.push(
            "Quantize the weights symmetrically (zero point 0): on this VNNI CPU the x86 engine then \
             sends the layer to oneDNN, which accumulates exactly."
                .to_string(),
        );
    }
    out.push(if pytorch {
        "Use an engine with exact accumulation: PyTorch's qnnpack engine, or qconv's exact engine \
         (`qconv run LAYER --engine exact`)."
            .to_string()
    } else {
        "Use an engine with exact accumulation: the ONNX reference evaluator, or qconv's exact \
         engine (`qconv run LAYER --engine exact`)."
            .to_string()
    });
    out
}

/// The readable report.
pub fn render(r: &CheckReport) -> String {
    let mut out = String::new();
    let m = &r.model;
    let _ = writeln!(
        out,
        "engine  {} on {}: {} ({})",
        m.engine,
        m.isa,
        m.route,
        if m.saturating {
            "int16 pair saturation"
        } else {
            "exact accumulation"
        }
    );
    let _ = writeln!(
        out,
        "input   activations in [{}, {}]{}, zero point {} in padded taps",
        r.input_range.0,
        r.input_range.1,
        if r.range_given {
            " (--input-range)"
        } else {
            " (the full input range)"
        },
        r.input_zero_point
    );
    if !m.saturating {
        let _ = writeln!(
            out,
            "\nsafe: this route accumulates exactly; no input can saturate it."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:>7}  {:>13}  {:>13}  {:>12}  {:>16}  {:>18}{}",
        "channel",
        "max pair sum",
        "min pair sum",
        "risky pairs",
        "worst error acc",
        "worst error steps",
        if r.has_actual {
            "  on this input (elements, pairs, error)"
        } else {
            ""
        }
    );
    for c in &r.channels {
        let actual = match c.actual {
            Some((e, p, err)) => format!("  {e}, {p}, {err}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:>7}  {:>13}  {:>13}  {:>12}  {:>16}  {:>18.3}{actual}",
            c.oc,
            c.max_sum,
            c.min_sum,
            c.risky_pairs.len(),
            c.worst_error_acc,
            c.worst_error_steps
        );
    }
    let risky: Vec<&ChannelRisk> = r
        .channels
        .iter()
        .filter(|c| !c.risky_pairs.is_empty())
        .collect();
    for c in risky.iter().take(8) {
        let _ = writeln!(
            out,
            "\nchannel {}: pairs that can leave [-32768, 32767]",
            c.oc
        );
        for p in c.risky_pairs.iter().take(12) {
            let taps: Vec<String> = p
                .taps
                .iter()
                .map(|(k, i, w)| format!("k {k} w[{},{},{},{}]={w}", i[0], i[1], i[2], i[3]))
                .collect();
            let _ = writeln!(
                out,
                "  pair {}: {}; sum in [{}, {}]",
                p.pair,
                taps.join(", "),
                p.min_sum,
                p.max_sum
            );
        }
        if c.risky_pairs.len() > 12 {
            let _ = writeln!(out, "  ... {} more pairs", c.risky_pairs.len() - 12);
        }
    }
    if risky.len() > 8 {
        let _ = writeln!(
            out,
            "\n... {} more channels with risky pairs",
            risky.len() - 8
        );
    }
    let worst = r
        .channels
        .iter()
        .map(|c| c.worst_error_steps)
        .fold(0.0, f64::max);
    if r.range_can_saturate() {
        let _ = writeln!(
            out,
            "\nCAN SATURATE: {} of {} output channels have pairs that can leave int16 on {}; the \
             accumulator error can reach {} output steps.",
            risky.len(),
            r.channels.len(),
            m.isa,
            format_args!("{worst:.2}")
        );
    } else {
        let _ = writeln!(
            out,
            "\nsafe: no pair can leave int16 for activations in [{}, {}].",
            r.input_range.0, r.input_range.1
        );
    }
    if let Some(on_input) = r.saturates_on_input() {
        let elements: usize = r
            .channels
            .iter()
            .filter_map(|c| c.actual.map(|a| a.0))
            .sum();
        let _ = writeln!(
            out,
            "{}",
            match (on_input, r.range_can_saturate()) {
                (true, true) =>
                    format!("This layer's own input saturates {elements} output elements."),
                (true, false) => format!(
                    "CAN SATURATE: this layer's own input, which lies outside that range, saturates \
                     {elements} output elements."
                ),
                (false, _) => "This layer's own input saturates nothing.".to_string(),
            }
        );
    }
    if !r.fixes.is_empty() {
        let _ = writeln!(out, "\nfixes:");
        for f in &r.fixes {
            let _ = writeln!(out, "  - {f}");
        }
    }
    out
}

/// The report as JSON: the engine's accumulation, the range analysed, each channel's pair sums,
/// risky pairs (taps as `[oc, c, kh, kw]` with raw weights), worst errors, what the layer's own
/// input did, and the fixes.
pub fn to_json(r: &CheckReport) -> serde_json::Value {
    use serde_json::json;
    let m = &r.model;
    let channels: Vec<_> = r
        .channels
        .iter()
        .map(|c| {
            json!({
                "oc": c.oc,
                "max_pair_sum": c.max_sum,
                "min_pair_sum": c.min_sum,
                "risky_pairs": c.risky_pairs.iter().map(|p| json!({
                    "pair": p.pair,
                    "taps": p.taps.iter().map(|(k, at, w)| json!({
                        "k": k, "at": at, "weight": w,
                    })).collect::<Vec<_>>(),
                    "max_sum": p.max_sum,
                    "min_sum": p.min_sum,
                })).collect::<Vec<_>>(),
                "worst_error_acc": c.worst_error_acc,
                "worst_error_steps": c.worst_error_steps,
                "on_input": c.actual.map(|(elements, pairs, error)| json!({
                    "elements": elements, "saturated_pairs": pairs, "largest_error_acc": error,
                })),
            })
        })
        .collect();
    json!({
        "schema": "qconv-check/1",
        "layer": r.layer,
        "engine": m.engine.name(),
        "isa": m.isa.name(),
        "route": m.route,
        "saturating": m.saturating,
        "input_range": [r.input_range.0, r.input_range.1],
        "input_range_given": r.range_given,
        "input_zero_point": r.input_zero_point,
        "can_saturate": r.can_saturate(),
        "range_can_saturate": r.range_can_saturate(),
        "saturates_on_input": r.saturates_on_input(),
        "channels": channels,
        "fixes": r.fixes,
    })
}

//! Saturation audit of a whole ONNX model: [`crate::check`] on every convolution node and
//! several ISAs, without input data (each node's full input range), in one table.

use std::fmt::Write;

use crate::check::check;
use crate::engines::EngineKind;
use crate::error::Result;
use crate::io::onnx::{ConvNode, OnnxModel, OrtExecution};
use crate::isa::Isa;

/// What the check found for one node on one ISA.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeVerdict {
    /// The route accumulates exactly on this ISA.
    Exact { route: String },
    /// The route saturates int16 pairs, but no input in the range makes a pair leave int16.
    Safe { route: String },
    /// Some input in the range saturates a pair.
    CanSaturate {
        route: String,
        /// Output channels with a pair that can saturate, of all.
        risky_channels: usize,
        channels: usize,
        /// The largest accumulator error and the same in output steps.
        worst_acc: i64,
        worst_steps: f64,
    },
    /// The engine refuses the layer, or qconv does not model it; the reason.
    NotApplicable(String),
}

impl NodeVerdict {
    /// Whether the node can saturate.
    pub fn can_saturate(&self) -> bool {
        matches!(self, NodeVerdict::CanSaturate { .. })
    }

    /// The table cell.
    pub fn cell(&self) -> String {
        match self {
            NodeVerdict::Exact { .. } => "exact".into(),
            NodeVerdict::Safe { .. } => "safe".into(),
            NodeVerdict::CanSaturate {
                risky_channels,
                channels,
                worst_steps,
                ..
            } => format!("{worst_steps:.2} steps, {risky_channels}/{channels} ch"),
            NodeVerdict::NotApplicable(_) => "n/a".into(),
        }
    }

    fn route(&self) -> Option<&str> {
        match self {
            NodeVerdict::Exact { route }
            | NodeVerdict::Safe { route }
            | NodeVerdict::CanSaturate { route, .. } => Some(route),
            NodeVerdict::NotApplicable(_) => None,
        }
    }
}

/// One node's results.
#[derive(Clone, Debug)]
pub struct NodeCheck {
    pub node: ConvNode,
    /// One verdict per checked ISA, in the report's ISA order.
    pub verdicts: Vec<NodeVerdict>,
}

/// The audit of a model.
#[derive(Clone, Debug)]
pub struct ModelCheck {
    pub model: String,
    pub engine: EngineKind,
    pub isas: Vec<Isa>,
    pub input_range: Option<(i32, i32)>,
    pub nodes: Vec<NodeCheck>,
}

impl ModelCheck {
    /// Whether some node can saturate on some checked ISA.
    pub fn can_saturate(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.verdicts.iter().any(NodeVerdict::can_saturate))
    }
}

/// The ISAs an engine's results differ across, lowest first.
pub fn default_isas(engine: EngineKind) -> Vec<Isa> {
    match engine {
        EngineKind::OnnxRuntime => vec![Isa::Avx2, Isa::AvxVnni, Isa::Avx512, Isa::Avx512Vnni],
        _ => vec![Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni],
    }
}

/// Checks every convolution node of `model` for `engine` on each of `isas`, over each node's
/// full input range (or `input_range`, raw integers, when given).
pub fn check_model(
    model: &OnnxModel,
    engine: EngineKind,
    isas: &[Isa],
    input_range: Option<(i32, i32)>,
) -> Result<ModelCheck> {
    if !matches!(
        engine,
        EngineKind::Fbgemm | EngineKind::X86 | EngineKind::OnnxRuntime
    ) {
        return Err(crate::error::Error::invalid(
            "engine",
            format!("check models the saturating engines (fbgemm, x86, onnxruntime), not {engine}"),
        ));
    }
    if isas.is_empty() {
        return Err(crate::error::Error::invalid(
            "isa",
            "name at least one ISA to check",
        ));
    }
    if let Some((lo, hi)) = input_range
        && lo > hi
    {
        return Err(crate::error::Error::invalid(
            "--input-range",
            format!("[{lo}, {hi}] is not a range (the lower bound is above the upper)"),
        ));
    }
    let mut nodes = Vec::new();
    for node in model.conv_nodes()? {
        let layer = node.layer(model, None);
        let verdicts = isas
            .iter()
            .map(|&isa| {
                let layer = match &layer {
                    Ok(l) => l,
                    Err(e) => return NodeVerdict::NotApplicable(e.to_string()),
                };
                if let (EngineKind::OnnxRuntime, OrtExecution::NotFused(why)) = (engine, &node.ort)
                {
                    return NodeVerdict::NotApplicable(format!(
                        "not modelled: ONNX Runtime runs it as a float Conv ({why})"
                    ));
                }
                match check(layer, engine, isa, input_range, false) {
                    Err(e) => NodeVerdict::NotApplicable(e.to_string()),
                    Ok(r) => {
                        let route = r.model.route.clone();
                        if !r.model.saturating {
                            NodeVerdict::Exact { route }
                        } else if !r.range_can_saturate() {
                            NodeVerdict::Safe { route }
                        } else {
                            NodeVerdict::CanSaturate {
                                route,
                                risky_channels: r
                                    .channels
                                    .iter()
                                    .filter(|c| !c.risky_pairs.is_empty())
                                    .count(),
                                channels: r.channels.len(),
                                worst_acc: r
                                    .channels
                                    .iter()
                                    .map(|c| c.worst_error_acc)
                                    .max()
                                    .unwrap_or(0),
                                worst_steps: r
                                    .channels
                                    .iter()
                                    .map(|c| c.worst_error_steps)
                                    .fold(0.0, f64::max),
                            }
                        }
                    }
                }
            })
            .collect();
        nodes.push(NodeCheck { node, verdicts });
    }
    Ok(ModelCheck {
        model: model.path.clone(),
        engine,
        isas: isas.to_vec(),
        input_range,
        nodes,
    })
}

/// The readable table.
pub fn render_model_check(c: &ModelCheck) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model   {} ({} convolution nodes)",
        c.model,
        c.nodes.len()
    );
    let _ = writeln!(
        out,
        "engine  {}; activations {}",
        c.engine,
        match c.input_range {
            Some((lo, hi)) => format!("in [{lo}, {hi}] (--input-range)"),
            None => "anywhere in each node's input type (no data needed)".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "cells   exact: the route accumulates exactly; safe: no pair can leave int16; \
         N steps, R/C ch: the worst output error and the channels that can saturate"
    );
    let _ = writeln!(out);
    let labels: Vec<String> = c.nodes.iter().map(|n| n.node.label()).collect();
    let name_w = labels
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let routes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| {
            n.verdicts
                .iter()
                .find_map(|v| v.route())
                .unwrap_or("-")
                .trim_start_matches("ONNX Runtime ")
                .to_string()
        })
        .collect();
    let route_w = routes.iter().map(String::len).max().unwrap_or(5).max(5);
    let cells: Vec<Vec<String>> = c
        .nodes
        .iter()
        .map(|n| n.verdicts.iter().map(NodeVerdict::cell).collect())
        .collect();
    let col_w: Vec<usize> = c
        .isas
        .iter()
        .enumerate()
        .map(|(j, isa)| {
            cells
                .iter()
                .map(|r| r[j].len())
                .max()
                .unwrap_or(0)
                .max(isa.name().len())
        })
        .collect();
    let mut header = format!(
        "{:>3}  {:<name_w$}  {:<7}  {:<route_w$}",
        "#", "node", "kernel", "route"
    );
    for (isa, w) in c.isas.iter().zip(&col_w) {
        let _ = write!(header, "  {:>w$}", isa.name());
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for (i, n) in c.nodes.iter().enumerate() {
        let mut label = labels[i].clone();
        if label.len() > name_w {
            label = format!("...{}", &label[label.len() - (name_w - 3)..]);
        }
        let mut line = format!(
            "{:>3}  {:<name_w$}  {:<7}  {:<route_w$}",
            n.node.index,
            label,
            format!(
                "{}x{}/{}",
                n.node.kernel[0], n.node.kernel[1], n.node.groups
            ),
            routes[i]
        );
        for (cell, w) in cells[i].iter().zip(&col_w) {
            let _ = write!(line, "  {cell:>w$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let mut notes: Vec<String> = Vec::new();
    for n in &c.nodes {
        for v in &n.verdicts {
            if let NodeVerdict::NotApplicable(why) = v {
                let note = format!("#{} {}: {why}", n.node.index, n.node.label());
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nn/a:");
        for note in notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    let _ = writeln!(out);
    for (j, isa) in c.isas.iter().enumerate() {
        let steps = |n: &NodeCheck| match n.verdicts[j] {
            NodeVerdict::CanSaturate { worst_steps, .. } => worst_steps,
            _ => 0.0,
        };
        let risky: Vec<&NodeCheck> = c
            .nodes
            .iter()
            .filter(|n| n.verdicts[j].can_saturate())
            .collect();
        let Some(worst) = risky.iter().max_by(|a, b| steps(a).total_cmp(&steps(b))) else {
            let checked = c
                .nodes
                .iter()
                .filter(|n| !matches!(n.verdicts[j], NodeVerdict::NotApplicable(_)))
                .count();
            if checked == 0 {
                let _ = writeln!(out, "{isa}: no node could be checked (all n/a)");
            } else {
                let _ = writeln!(out, "{isa}: no node can saturate ({checked} checked)");
            }
            continue;
        };
        let steps = steps(worst);
        let _ = writeln!(
            out,
            "{isa}: CAN SATURATE: {} of {} nodes; worst #{} {} ({steps:.2} output steps)",
            risky.len(),
            c.nodes.len(),
            worst.node.index,
            worst.node.label()
        );
    }
    out
}

/// The audit as JSON: one entry per node (index, name, kernel) with one verdict per ISA.
pub fn to_json(c: &ModelCheck) -> serde_json::Value {
    use serde_json::json;
    let verdict = |v: &NodeVerdict| match v {
        NodeVerdict::Exact { route } => json!({"verdict": "exact", "route": route}),
        NodeVerdict::Safe { route } => json!({"verdict": "safe", "route": route}),
        NodeVerdict::CanSaturate {
            route,
            risky_channels,
            channels,
            worst_acc,
            worst_steps,
        } => json!({
            "verdict": "can-saturate",
            "route": route,
            "risky_channels": risky_channels,
            "channels": channels,
            "worst_error_acc": worst_acc,
            "worst_error_steps": worst_steps,
        }),
        NodeVerdict::NotApplicable(reason) => json!({"verdict": "n/a", "reason": reason}),
    };
    json!({
        "schema": "qconv-model-check/1",
        "model": c.model,
        "engine": c.engine.name(),
        "isas": c.isas.iter().map(|i| i.name()).collect::<Vec<_>>(),
        "input_range": c.input_range.map(|(lo, hi)| [lo, hi]),
        "can_saturate": c.can_saturate(),
        "nodes": c.nodes.iter().map(|n| json!({
            "index": n.node.index,
            "name": n.node.name,
            "label": n.node.label(),
            "kernel": n.node.kernel,
            "verdicts": c.isas.iter().zip(&n.verdicts).map(|(isa, v)| {
                let mut v = verdict(v);
                v["isa"] = json!(isa.name());
                v
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

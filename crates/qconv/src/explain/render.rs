//! Text and HTML renderings of an [`Explanation`].

use crate::geometry::format_index as coords;
use std::fmt::Write;

use super::{Cause, CauseKind, Detail, ElementExplanation, Evidence, Explanation};

/// An exact value for display: 4 decimals, or 9 when it lies near a rounding tie (where the
/// digits decide the rounding).
fn exact(v: f64) -> String {
    let to_tie = ((v - 0.5).round() + 0.5 - v).abs();
    if to_tie < 1e-4 {
        format!("{v:.9}")
    } else {
        format!("{v:.4}")
    }
}

/// A signed integer with an explicit `+`.
fn signed(v: i64) -> String {
    if v > 0 {
        format!("+{v}")
    } else {
        v.to_string()
    }
}

fn number_word(n: usize) -> String {
    match n {
        1 => "one".into(),
        2 => "two".into(),
        3 => "three".into(),
        4 => "four".into(),
        5 => "five".into(),
        _ => n.to_string(),
    }
}

/// `(weights, activations)` of a pair-saturation cause.
fn pair_values(c: &Cause) -> (Vec<i64>, Vec<i64>) {
    match &c.detail {
        Detail::PairSaturation(p) => (
            p.taps.iter().map(|t| t.weight_value as i64).collect(),
            p.taps.iter().map(|t| t.activation as i64).collect(),
        ),
        Detail::Rounding { .. }
        | Detail::Int32Wrap { .. }
        | Detail::AccumulatorOverflow { .. }
        | Detail::SamePaddingUnderflow { .. } => (Vec::new(), Vec::new()),
    }
}

fn tuple(v: &[i64]) -> String {
    let parts: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("({})", parts.join(", "))
}

/// One engine's story at one element, in plain words.
fn narrative(x: &Explanation, el: &ElementExplanation, e: usize) -> String {
    let info = &x.engines[e];
    let label = info.label();
    let causes: Vec<&Cause> = el
        .causes
        .iter()
        .filter(|c| c.engine == info.engine)
        .collect();
    let value = el.values[e];
    if causes.is_empty() {
        return format!("{label} {value}: the exact result, nothing to explain.");
    }
    let mut out = format!("{label} {value}:");
    let pairs: Vec<&&Cause> = causes
        .iter()
        .filter(|c| c.kind == CauseKind::PairSaturation)
        .collect();
    if !pairs.is_empty() {
        let total: i64 = pairs.iter().map(|c| c.acc_delta).sum();
        let values: Vec<(Vec<i64>, Vec<i64>)> = pairs.iter().map(|c| pair_values(c)).collect();
        let all_acts: Vec<i64> = values.iter().flat_map(|(_, a)| a.clone()).collect();
        let same_activation = all_acts.windows(2).all(|w| w[0] == w[1]);
        const LISTED: usize = 4;
        let weights: Vec<String> = values.iter().take(LISTED).map(|(w, _)| tuple(w)).collect();
        let more = values.len().saturating_sub(LISTED);
        let weights = match (weights.len(), more) {
            (1, _) => weights[0].clone(),
            (2, 0) => format!("{} and {}", weights[0], weights[1]),
            (n, 0) => format!("{} and {}", weights[..n - 1].join(", "), weights[n - 1]),
            (_, m) => format!("{} and {m} more", weights.join(", ")),
        };
        let times = if same_activation {
            format!("times activation {}", all_acts[0])
        } else {
            let acts: Vec<String> = values.iter().take(LISTED).map(|(_, a)| tuple(a)).collect();
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("times activations {}{tail}", acts.join(", "))
        };
        let n = pairs.len();
        let _ = write!(
            out,
            " {} saturated int16 pair{}, weights {weights} {times}, add{} {} to the exact accumulator {}, giving {}.",
            number_word(n),
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            signed(total),
            el.exact_acc,
            el.acc[e]
        );
    }
    for c in causes.iter().filter(|c| c.kind == CauseKind::Int32Wrap) {
        if let Detail::Int32Wrap { unwrapped } = &c.detail {
            let _ = write!(
                out,
                " The int32 accumulator wraps around: {unwrapped} becomes {}.",
                el.acc[e]
            );
        }
    }
    for c in causes
        .iter()
        .filter(|c| c.kind == CauseKind::SamePaddingUnderflow)
    {
        if let Detail::SamePaddingUnderflow { dimension, total } = &c.detail {
            let _ = write!(
                out,
                " Its SAME padding total in {dimension} is {total}, which the engine computes in unsigned arithmetic: the padding wraps around, every tap reads padding, and the accumulator is {} instead of {}.",
                el.acc[e], el.exact_acc
            );
        }
    }
    for c in causes
        .iter()
        .filter(|c| c.kind == CauseKind::AccumulatorOverflow)
    {
        if let Detail::AccumulatorOverflow {
            width,
            exact,
            narrowed,
        } = &c.detail
        {
            let (lo, hi) = width.range();
            let verb = match width.overflow {
                crate::engines::narrow::Overflow::Saturate => "saturates",
                crate::engines::narrow::Overflow::Wrap => "wraps around",
            };
            let _ = write!(
                out,
                " The {}-bit accumulator (range [{lo}, {hi}]) {verb}: it holds {narrowed} where the exact sum with bias is {exact}.",
                width.bits
            );
        }
    }
    for c in causes.iter().filter(|c| c.kind.is_rounding()) {
        let Detail::Rounding { from, to, evidence } = &c.detail else {
            continue;
        };
        let sentence = match evidence {
            Evidence::Clamp { range, relu } => format!(
                " {from} is clamped to {to} (output range [{}, {}]{}).",
                range.0,
                range.1,
                if *relu { ", fused ReLU" } else { "" }
            ),
            Evidence::Requant {
                engine_value,
                exact_value,
                ..
            } => format!(
                " Requantization in float32 gives {to} where exact rounding gives {from} (value {engine_value:.6} before rounding, exact {exact_value:.6})."
            ),
            Evidence::Bias {
                bias_integer,
                bias_in_acc_units,
                ..
            } => format!(
                " Rounding the bias to the integer {bias_integer} (exactly {bias_in_acc_units:.4}) moves {from} to {to}."
            ),
            Evidence::FloatSum {
                float_value,
                exact_value,
                boundary_distance_steps,
                ..
            } => format!(
                " Summing in float32 gives {float_value:.6}, exactly {exact_value:.6}: {from} becomes {to} (the exact value is {boundary_distance_steps:.2e} steps from a rounding boundary)."
            ),
            Evidence::Dequantization { tensor } => {
                format!(" Dequantizing the {tensor} to float32 moves {from} to {to}.")
            }
        };
        out.push_str(&sentence);
    }
    if !pairs.is_empty() && causes.iter().all(|c| !c.kind.is_rounding()) {
        let _ = write!(out, " That requantizes to {value}.");
    }
    out
}

/// The pair-saturation evidence lines of one engine at one element (the first few).
fn pair_lines(el: &ElementExplanation, engine: crate::EngineKind, out: &mut String) {
    const SHOWN: usize = 8;
    let pairs = el
        .causes
        .iter()
        .filter(|c| c.engine == engine && c.kind == CauseKind::PairSaturation)
        .count();
    if pairs > SHOWN {
        let _ = writeln!(out, "      ({pairs} pairs; the first {SHOWN}:)");
    }
    for c in el.causes.iter().filter(|c| c.engine == engine).take(SHOWN) {
        let Detail::PairSaturation(p) = &c.detail else {
            continue;
        };
        let ks: Vec<String> = p.taps.iter().map(|t| t.k.to_string()).collect();
        let inputs: Vec<String> = p
            .taps
            .iter()
            .map(|t| {
                t.input.map_or("pad".to_string(), |i| {
                    format!("x{}", coords(i.map(|x| x as usize)))
                })
            })
            .collect();
        let weights: Vec<String> = p
            .taps
            .iter()
            .map(|t| format!("w{}", coords(t.weight.map(|x| x as usize))))
            .collect();
        let products: Vec<String> = p
            .taps
            .iter()
            .map(|t| format!("{}*{}", t.activation, t.weight_value))
            .collect();
        let _ = writeln!(
            out,
            "      pair {} (k {}): {} = {} -> {} ({})   {} {}",
            p.pair,
            ks.join(","),
            products.join(" + "),
            p.sum,
            p.saturated,
            signed(c.acc_delta),
            inputs.join(" "),
            weights.join(" ")
        );
    }
}

/// The readable text report: a header, the story of the first `detailed` differing elements, a
/// table of up to `limit` differing elements, and a summary of causes.
pub fn text(x: &Explanation, detailed: usize, limit: usize) -> String {
    let mut out = String::new();
    let labels: Vec<String> = x.engines.iter().map(|e| e.label()).collect();
    for (info, label) in x.engines.iter().zip(&labels) {
        let _ = writeln!(out, "  {label}: {}", info.route);
        for w in &info.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} of {} output elements differ between {}.",
        x.elements.len(),
        x.total(),
        labels.join(" and ")
    );
    for el in x.elements.iter().take(detailed) {
        let values: Vec<String> = labels
            .iter()
            .zip(&el.values)
            .map(|(l, v)| format!("{l} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "\n{}: {}. Exact: accumulator {}, value {}, result {}.",
            coords(el.index),
            values.join(", "),
            el.exact_acc,
            exact(el.exact_value),
            el.exact_output
        );
        for (e, info) in x.engines.iter().enumerate() {
            let _ = writeln!(out, "  {}", narrative(x, el, e));
            pair_lines(el, info.engine, &mut out);
        }
    }
    if x.elements.len() > detailed {
        let _ = writeln!(
            out,
            "\n({} more differing elements in the table below.)",
            x.elements.len() - detailed
        );
    }
    if !x.elements.is_empty() {
        let index_width = coords(x.shape).len().max(5);
        let _ = write!(out, "\n{:<index_width$}", "index");
        for l in &labels {
            let _ = write!(out, "  {l:>w$}", w = l.len().max(4));
        }
        let _ = write!(out, "  {:>12}", "exact acc");
        for l in &labels {
            let h = format!("acc {l}");
            let _ = write!(out, "  {h:>w$}", w = h.len().max(8));
        }
        let _ = writeln!(out, "  causes");
        let value_widths: Vec<usize> = labels.iter().map(|l| l.len().max(4)).collect();
        let acc_widths: Vec<usize> = labels.iter().map(|l| (l.len() + 4).max(8)).collect();
        // Per engine and cause kind: (causes, acc delta) of the row, gathered in one pass.
        let kinds = super::CauseKind::ALL;
        let mut tally = vec![(0usize, 0i64); x.engines.len() * kinds.len()];
        for el in x.elements.iter().take(limit) {
            let _ = write!(out, "{:<index_width$}", coords(el.index));
            for (v, w) in el.values.iter().zip(&value_widths) {
                let _ = write!(out, "  {v:>w$}");
            }
            let _ = write!(out, "  {:>12}", el.exact_acc);
            for (a, w) in el.acc.iter().zip(&acc_widths) {
                let _ = write!(out, "  {a:>w$}");
            }
            tally.fill((0, 0));
            for c in &el.causes {
                let e = x.engines.iter().position(|i| i.engine == c.engine);
                let k = kinds.iter().position(|&k| k == c.kind);
                if let (Some(e), Some(k)) = (e, k) {
                    let t = &mut tally[e * kinds.len() + k];
                    t.0 += 1;
                    t.1 += c.acc_delta;
                }
            }
            out.push_str("  ");
            let mut first_engine = true;
            for (e, l) in labels.iter().enumerate() {
                let mut first_kind = true;
                for (k, kind) in kinds.iter().enumerate() {
                    let (n, delta) = tally[e * kinds.len() + k];
                    if n == 0 {
                        continue;
                    }
                    if first_kind {
                        if !first_engine {
                            out.push_str("; ");
                        }
                        let _ = write!(out, "{l}: ");
                        first_engine = false;
                    } else {
                        out.push_str(", ");
                    }
                    first_kind = false;
                    if *kind == CauseKind::PairSaturation {
                        let _ = write!(out, "pair-saturation x{n} ({})", signed(delta));
                    } else {
                        out.push_str(kind.name());
                    }
                }
            }
            out.push('\n');
        }
        if x.elements.len() > limit {
            let _ = writeln!(out, "... {} more rows (--limit)", x.elements.len() - limit);
        }
    }
    let _ = writeln!(out, "\nsummary");
    let _ = writeln!(
        out,
        "  differing elements: {} of {}",
        x.elements.len(),
        x.total()
    );
    if let Some((d, i)) = x.largest_difference() {
        let _ = writeln!(out, "  largest difference: {d} at {}", coords(i));
    }
    let counts = x.cause_counts();
    if !counts.is_empty() {
        let lw = labels.iter().map(String::len).max().unwrap_or(6).max(6);
        let _ = writeln!(
            out,
            "  {:<19} {:<lw$} {:>9} {:>11} {:>12}",
            "cause", "engine", "elements", "occurrences", "acc delta"
        );
        for (e, kind, c) in counts {
            let _ = writeln!(
                out,
                "  {:<19} {:<lw$} {:>9} {:>11} {:>12}",
                kind.name(),
                labels[e],
                c.elements,
                c.occurrences,
                signed(c.acc_delta)
            );
        }
    }
    out
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A color from white (0) to deep red (`max`), for heatmap cells.
fn heat(v: i64, max: i64) -> String {
    if v == 0 || max == 0 {
        return "#f4f4f4".into();
    }
    let t = (v as f64 / max as f64).clamp(0.0, 1.0);
    let (r, g, b) = (
        255.0 - 75.0 * t,
        220.0 * (1.0 - t) + 20.0,
        200.0 * (1.0 - t) + 20.0,
    );
    format!("rgb({},{},{})", r as u8, g as u8, b as u8)
}

/// The self-contained HTML report: per output channel a heatmap of where the first two engines
/// differ and by how much, a histogram of difference sizes, the cause breakdown, and the table
/// of differing elements (up to `limit` rows). No scripts or network resources.
pub fn html(x: &Explanation, layer_description: &str, limit: usize) -> String {
    let labels: Vec<String> = x.engines.iter().map(|e| e.label()).collect();
    let [n_len, c_len, h_len, w_len] = x.shape;
    let mut diff = vec![0i64; x.total()];
    for el in &x.elements {
        let [n, c, h, w] = el.index;
        diff[((n * c_len + c) * h_len + h) * w_len + w] =
            (el.values[0] as i64 - el.values[1] as i64).abs();
    }
    let max = diff.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let title = format!(
        "qconv explain: {} ({} vs {})",
        x.layer, labels[0], labels[1]
    );
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }}
.meta {{ color: #555; font-size: 0.9em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 14px; }}
.map {{ border: 1px solid #ddd; padding: 6px; border-radius: 4px; }}
.map h3 {{ font-size: 0.85em; margin: 0 0 4px 0; font-weight: 600; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} td.l {{ text-align: left; }}
.legend span {{ display: inline-block; width: 18px; height: 12px; vertical-align: middle; border: 1px solid #ccc; }}
.warn {{ color: #a40; }}
</style></head><body>
<h1>{}</h1>
<p class="meta">{}</p>
"#,
        esc(&title),
        esc(&title),
        esc(layer_description)
    );
    out.push_str("<ul class=\"meta\">");
    for (info, l) in x.engines.iter().zip(&labels) {
        let _ = write!(out, "<li><b>{}</b>: {}", esc(l), esc(&info.route));
        for w in &info.warnings {
            let _ = write!(out, "<br><span class=\"warn\">warning: {}</span>", esc(w));
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    let _ = write!(
        out,
        "<p><b>{} of {} output elements differ</b>{}.</p>",
        x.elements.len(),
        x.total(),
        x.largest_difference()
            .map(|(d, i)| format!("; the largest difference is {d} at {}", coords(i)))
            .unwrap_or_default()
    );

    // The story of the first elements, in words.
    if !x.elements.is_empty() {
        out.push_str("<h2>What happened</h2>");
        for el in x.elements.iter().take(5) {
            let values: Vec<String> = labels
                .iter()
                .zip(&el.values)
                .map(|(l, v)| format!("{} {v}", esc(l)))
                .collect();
            let _ = write!(
                out,
                "<p><b>{}</b>: {}. Exact: accumulator {}, value {}, result {}.</p><ul>",
                coords(el.index),
                values.join(", "),
                el.exact_acc,
                exact(el.exact_value),
                el.exact_output
            );
            for e in 0..x.engines.len() {
                let _ = write!(out, "<li>{}</li>", esc(&narrative(x, el, e)));
            }
            out.push_str("</ul>");
        }
        if x.elements.len() > 5 {
            let _ = write!(
                out,
                "<p class=\"meta\">({} more elements in the table below.)</p>",
                x.elements.len() - 5
            );
        }
    }

    // Heatmaps.
    let _ = write!(
        out,
        "<h2>Where they differ</h2><p class=\"legend\">|{} &minus; {}| per output element, one map per batch item and output channel: <span style=\"background:{}\"></span> 0 &nbsp; <span style=\"background:{}\"></span> {} &nbsp; <span style=\"background:{}\"></span> {}</p><div class=\"grid\">",
        esc(&labels[0]),
        esc(&labels[1]),
        heat(0, 1),
        heat(1.max(max / 2), max.max(1)),
        1.max(max / 2),
        heat(max.max(1), max.max(1)),
        max
    );
    let cell = (240 / w_len.max(h_len).max(1)).clamp(3, 16);
    let maps_limit = 256;
    let mut shown = 0;
    for n in 0..n_len {
        for c in 0..c_len {
            let plane = &diff[(n * c_len + c) * h_len * w_len..(n * c_len + c + 1) * h_len * w_len];
            let count = plane.iter().filter(|&&d| d != 0).count();
            if shown >= maps_limit {
                continue;
            }
            shown += 1;
            let _ = write!(
                out,
                "<div class=\"map\"><h3>n={n} c={c}: {count} differ</h3><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"differences in channel {c}\">",
                w_len * cell,
                h_len * cell
            );
            for h in 0..h_len {
                for w in 0..w_len {
                    let d = plane[h * w_len + w];
                    let _ = write!(
                        out,
                        "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"{}\"><title>[{n},{c},{h},{w}]: {d}</title></rect>",
                        w * cell,
                        h * cell,
                        heat(d, max)
                    );
                }
            }
            out.push_str("</svg></div>");
        }
    }
    out.push_str("</div>");
    if n_len * c_len > maps_limit {
        let _ = write!(
            out,
            "<p class=\"meta\">(first {maps_limit} of {} maps shown)</p>",
            n_len * c_len
        );
    }

    // Histogram of difference sizes.
    let mut hist: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new();
    for &d in diff.iter().filter(|&&d| d != 0) {
        *hist.entry(d).or_default() += 1;
    }
    out.push_str("<h2>Sizes of the differences</h2>");
    if hist.is_empty() {
        out.push_str("<p>No element differs.</p>");
    } else {
        let top = *hist.values().max().unwrap_or(&1);
        let bar_w = 36;
        let height = 160;
        let width = hist.len() * (bar_w + 8) + 50;
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"histogram of difference sizes\">",
            height + 40
        );
        for (i, (d, count)) in hist.iter().enumerate() {
            let h = (*count as f64 / top as f64 * height as f64).max(1.0) as usize;
            let x0 = 40 + i * (bar_w + 8);
            let _ = write!(
                out,
                "<rect x=\"{x0}\" y=\"{}\" width=\"{bar_w}\" height=\"{h}\" fill=\"#c0392b\"><title>{count} elements differ by {d}</title></rect><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{d}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{count}</text>",
                height - h + 24,
                x0 + bar_w / 2,
                height + 40,
                x0 + bar_w / 2,
                height - h + 20
            );
        }
        out.push_str("</svg><p class=\"meta\">x: |difference| in output units; bar labels: number of elements.</p>");
    }

    // Causes.
    out.push_str("<h2>Causes</h2><table><tr><th>cause</th><th>engine</th><th>elements</th><th>occurrences</th><th>accumulator change</th></tr>");
    for (e, kind, c) in x.cause_counts() {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            kind.name(),
            esc(&labels[e]),
            c.elements,
            c.occurrences,
            signed(c.acc_delta)
        );
    }
    out.push_str("</table>");

    // Element table.
    out.push_str("<h2>Differing elements</h2><table><tr><th>index</th>");
    for l in &labels {
        let _ = write!(out, "<th>{}</th>", esc(l));
    }
    out.push_str("<th>exact acc</th><th>exact value</th>");
    for l in &labels {
        let _ = write!(out, "<th>acc {}</th>", esc(l));
    }
    out.push_str("<th>causes</th></tr>");
    for el in x.elements.iter().take(limit) {
        let _ = write!(out, "<tr><td class=\"l\">{}</td>", coords(el.index));
        for v in &el.values {
            let _ = write!(out, "<td>{v}</td>");
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{:.4}</td>",
            el.exact_acc, el.exact_value
        );
        for a in &el.acc {
            let _ = write!(out, "<td>{a}</td>");
        }
        let causes: Vec<String> = el
            .causes
            .iter()
            .map(|c| {
                let label = x
                    .engines
                    .iter()
                    .position(|e| e.engine == c.engine)
                    .map_or(String::new(), |i| labels[i].clone());
                match c.step() {
                    Some((f, t)) => format!("{}: {} {f}&rarr;{t}", esc(&label), c.kind.name()),
                    None => format!("{}: {} {}", esc(&label), c.kind.name(), signed(c.acc_delta)),
                }
            })
            .collect();
        let _ = write!(out, "<td class=\"l\">{}</td></tr>", causes.join("<br>"));
    }
    out.push_str("</table>");
    if x.elements.len() > limit {
        let _ = write!(
            out,
            "<p class=\"meta\">{} more rows not shown.</p>",
            x.elements.len() - limit
        );
    }
    out.push_str("<p class=\"meta\">Generated by qconv. Every difference is accounted for: accumulator causes add up to each engine's accumulator minus the exact one, and rounding causes chain from the exactly rounded accumulator to the engine's output.</p></body></html>\n");
    out
}

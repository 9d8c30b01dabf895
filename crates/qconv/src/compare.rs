//! Several engines on one layer: their outputs, the exact real value of every element, and where
//! they differ (what `qconv compare` and the Python `compare` report).

use std::fmt::Write;

use crate::engines::{Accumulators, EngineKind, EngineOutput, RunOptions, exact};
use crate::error::{Error, Result};
use crate::geometry::format_index;
use crate::io::LoadedLayer;
use crate::layer::ConvLayer;

/// The outputs of several engines on one layer.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The engines that accepted the layer, in the order asked.
    pub outputs: Vec<EngineOutput>,
    /// Why the other engines refused it (when the engines were not named).
    pub refusals: Vec<String>,
    /// The exact real value of every output element before rounding, in output units.
    pub real: Vec<f64>,
}

/// Runs `engines` on `loaded`: the named ones, each of which must accept the layer, or every
/// engine (those that refuse it are listed in [`Comparison::refusals`]). Fewer than two
/// engines accepting the layer is an error.
pub fn compare(
    loaded: &LoadedLayer,
    engines: Option<&[EngineKind]>,
    options: &RunOptions,
) -> Result<Comparison> {
    let explicit = engines.is_some();
    let mut wanted: Vec<EngineKind> = Vec::new();
    for &e in engines.unwrap_or(&EngineKind::ALL) {
        if !wanted.contains(&e) {
            wanted.push(e);
        }
    }
    let mut outputs = Vec::new();
    let mut refusals = Vec::new();
    for &engine in &wanted {
        match loaded.run(engine, options) {
            Ok(out) => outputs.push(out),
            Err(e) if explicit => return Err(e),
            Err(e) => refusals.push(e.to_string()),
        }
    }
    if outputs.len() < 2 {
        return Err(Error::invalid(
            "engines",
            format!(
                "fewer than two engines accept this layer, nothing to compare ({})",
                refusals.join("; ")
            ),
        ));
    }
    let layer = &loaded.layer;
    // The exact real values, for reference; from the exact run if there was one.
    let real = match outputs.iter().find_map(|o| match &o.accumulators {
        Accumulators::Exact(a) if o.engine == EngineKind::Exact => Some(a),
        _ => None,
    }) {
        Some(a) => exact::real_values(layer, a)?,
        None => exact::real_values(layer, &exact::accumulators(layer, options)?)?,
    };
    Ok(Comparison {
        outputs,
        refusals,
        real,
    })
}

impl Comparison {
    /// The output indices (NCHW) where at least two engines differ.
    pub fn differing(&self) -> Vec<usize> {
        let first = &self.outputs[0].values;
        (0..first.len())
            .filter(|&i| self.outputs.iter().any(|o| o.values[i] != first[i]))
            .collect()
    }

    /// The report: each engine's route, one row per differing element (at most `limit`) with
    /// every engine's integer and the exact real value, the count, and the pairwise counts.
    pub fn table(&self, layer: &ConvLayer, limit: usize) -> String {
        let mut out = String::new();
        let outputs = &self.outputs;
        let labels: Vec<String> = outputs.iter().map(EngineOutput::label).collect();
        let label_width = labels.iter().map(String::len).max().unwrap_or(0);
        for (label, o) in labels.iter().zip(outputs) {
            let _ = writeln!(out, "  {label:<label_width$}  {}", o.path);
        }
        let _ = writeln!(out);
        let total = layer.output_len();
        let differing = self.differing();
        let widths: Vec<usize> = labels.iter().map(|l| l.len().max(6)).collect();
        let index_width = format_index(layer.geometry.output_shape()).len().max(5);
        let _ = write!(out, "{:<index_width$}", "index");
        for (l, w) in labels.iter().zip(&widths) {
            let _ = write!(out, "  {l:>w$}");
        }
        let _ = writeln!(out, "  exact real value");
        let shown = limit.min(differing.len());
        for &i in &differing[..shown] {
            let at = format_index(layer.geometry.output_coords(i));
            let _ = write!(out, "{at:<index_width$}");
            for (o, w) in outputs.iter().zip(&widths) {
                let _ = write!(out, "  {:>w$}", o.values[i]);
            }
            let _ = writeln!(out, "  {:>16.6}", self.real[i]);
        }
        if shown < differing.len() {
            let _ = writeln!(
                out,
                "... {} more differing elements not shown (--limit)",
                differing.len() - shown
            );
        }
        let _ = writeln!(
            out,
            "\n{} of {total} output elements differ between at least two engines.\n",
            differing.len()
        );
        let _ = writeln!(out, "pairwise disagreement:");
        for a in 0..outputs.len() {
            for b in a + 1..outputs.len() {
                let n = differing
                    .iter()
                    .filter(|&&i| outputs[a].values[i] != outputs[b].values[i])
                    .count();
                let _ = writeln!(
                    out,
                    "  {:<w$}  vs  {:<w$}  {n:>8} of {total} ({:.2}%)",
                    labels[a],
                    labels[b],
                    100.0 * n as f64 / total as f64,
                    w = label_width
                );
            }
        }
        out
    }
}

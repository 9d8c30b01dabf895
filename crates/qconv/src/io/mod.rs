//! Reading layers and golden cases, and writing results.

pub mod csv;
pub mod golden;
pub mod layer_file;
pub mod npy;
pub mod output;

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::layer::ConvLayer;

/// Reads a whole file; the error names the path.
pub fn read_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_string(),
        error,
    })
}

/// Converts integers to `i32`, naming the first that does not fit.
pub(crate) fn to_i32_data(field: &str, values: &[i64]) -> Result<Vec<i32>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            i32::try_from(v).map_err(|_| {
                Error::invalid(field, format!("element {i} is {v}, not a 32-bit integer"))
            })
        })
        .collect()
}

/// A layer loaded from any supported source, with reference results when the source has them.
#[derive(Clone, Debug)]
pub struct LoadedLayer {
    pub layer: ConvLayer,
    /// Engine key -> integers a real engine returned (golden cases) or a file records.
    pub expected: BTreeMap<String, Vec<i64>>,
    /// Engine key -> the error that engine raised (golden cases).
    pub errors: BTreeMap<String, String>,
}

/// Loads a LAYER argument: a TOML layer file, a golden case file (`.json`), or one case of a
/// golden case collection (`FILE.jsonl#ID`, `FILE.jsonl.gz#ID`, or the file's only case).
pub fn load_layer(spec: &str) -> Result<LoadedLayer> {
    let (path, id) = match spec.rsplit_once('#') {
        Some((p, id)) if !id.is_empty() => (p, Some(id)),
        _ => (spec, None),
    };
    if path.ends_with(".toml") {
        if id.is_some() {
            return Err(Error::parse(
                path,
                "",
                "a TOML layer file holds one layer; drop the #ID",
            ));
        }
        let f = layer_file::read_layer_file(path)?;
        return Ok(LoadedLayer {
            layer: f.layer,
            expected: f.expected,
            errors: BTreeMap::new(),
        });
    }
    if path.ends_with(".json") || path.ends_with(".jsonl") || path.ends_with(".jsonl.gz") {
        let case = golden::read_case(path, id)?;
        return Ok(LoadedLayer {
            layer: case.layer,
            expected: case.expected,
            errors: case.errors,
        });
    }
    Err(Error::parse(
        path,
        "",
        "unknown layer format (expected .toml, .json, .jsonl or .jsonl.gz)",
    ))
}

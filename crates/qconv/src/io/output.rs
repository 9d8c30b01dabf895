//! Writing an engine's output to `.csv`, `.npy` or `.json`.

use std::path::Path;

use crate::engines::EngineOutput;
use crate::error::{Error, Result};
use crate::layer::ConvLayer;

/// The output file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Npy,
    Json,
}

impl OutputFormat {
    /// The format of `path`, by extension.
    pub fn from_path(path: &str) -> Result<Self> {
        match Path::new(path).extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(OutputFormat::Csv),
            Some("npy") => Ok(OutputFormat::Npy),
            Some("json") => Ok(OutputFormat::Json),
            _ => Err(Error::invalid(
                "--output",
                format!("`{path}`: expected a .csv, .npy or .json file name"),
            )),
        }
    }
}

/// Encodes `out` (computed on `layer`) in `format`.
pub fn encode(format: OutputFormat, layer: &ConvLayer, out: &EngineOutput) -> Vec<u8> {
    match format {
        OutputFormat::Csv => super::csv::format(&out.shape, &out.values).into_bytes(),
        OutputFormat::Npy => super::npy::encode(out.dtype, &out.shape, &out.values),
        OutputFormat::Json => {
            let value = serde_json::json!({
                "layer": layer.name,
                "engine": out.engine.name(),
                "isa": out.isa.map(|i| i.name()),
                "path": out.path,
                "dtype": out.dtype.name(),
                "shape": out.shape,
                "scale": layer.output.scale,
                "zero_point": layer.output.zero_point,
                "data": out.values,
            });
            let mut text = serde_json::to_string_pretty(&value).expect("serializable");
            text.push('\n');
            text.into_bytes()
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, renamed into
/// place, so that a failure leaves nothing behind.
pub fn write_atomically(path: &str, bytes: &[u8]) -> Result<()> {
    let target = Path::new(path);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .ok_or_else(|| Error::invalid("--output", format!("`{path}` is not a file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io_err = |error| Error::Io {
        path: path.to_string(),
        error,
    };
    std::fs::write(&tmp, bytes).map_err(io_err)?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

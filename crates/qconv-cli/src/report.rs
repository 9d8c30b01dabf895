//! Shared pieces of the commands' text output.

use qconv::io::LoadedLayer;
use qconv::{ConvLayer, Isa, RunOptions};

/// Where the modelled ISA came from, in words.
pub fn isa_origin(options: &RunOptions, layer: &ConvLayer) -> String {
    let isa = options.resolve_isa(layer);
    let why = if options.isa.is_some() {
        "from --isa"
    } else if layer.recorded_isa.is_some() {
        "recorded by the layer"
    } else {
        "this CPU's"
    };
    format!("{isa} ({why})")
}

/// A one-line summary of a layer.
pub fn describe_layer(loaded: &LoadedLayer) -> String {
    loaded.layer.describe()
}

/// Prints the `layer` line of a report, then the notes the loader left (ONNX nodes).
pub fn print_layer(loaded: &LoadedLayer) {
    outln!("layer   {}", describe_layer(loaded));
    for note in &loaded.notes {
        outln!("note    {note}");
    }
}

/// Parses an `--isa` value.
pub fn parse_isa(s: &str) -> Result<Isa, String> {
    s.parse().map_err(|e: qconv::Error| e.to_string())
}

/// Parses an `--engine` value.
pub fn parse_engine(s: &str) -> Result<qconv::EngineKind, String> {
    s.parse().map_err(|e: qconv::Error| e.to_string())
}

//! Shared pieces of the commands' text output.

use qconv::engines::EngineOutput;
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

/// The column label of an engine's output: its name, with the ISA for ISA-dependent engines.
pub fn engine_label(out: &EngineOutput) -> String {
    match out.isa {
        Some(isa) if out.engine.depends_on_isa() => format!("{}({isa})", out.engine),
        _ => out.engine.to_string(),
    }
}

/// Formats `[n,c,h,w]`.
pub fn coords(c: [usize; 4]) -> String {
    format!("[{},{},{},{}]", c[0], c[1], c[2], c[3])
}

/// Parses an `--isa` value.
pub fn parse_isa(s: &str) -> Result<Isa, String> {
    s.parse().map_err(|e: qconv::Error| e.to_string())
}

/// Parses an `--engine` value.
pub fn parse_engine(s: &str) -> Result<qconv::EngineKind, String> {
    s.parse().map_err(|e: qconv::Error| e.to_string())
}

//! The `qconv` command line.

/// `println!` to standard output; a closed pipe (`qconv ... | head`) ends the program quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            crate::stdout_failed(e)
        }
    }};
}

/// `print!` to standard output, like [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            crate::stdout_failed(e)
        }
    }};
}

mod accumulator;
mod bench;
mod check;
mod compare;
mod compute;
mod conformance;
mod explain;
mod layers;
mod progress;
mod report;
mod run;
mod vectors;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exact quantized convolution, and bit-exact models of the engines that compute it.
///
/// LAYER is a TOML layer file (see the README), a golden case file (.json), one case of a
/// golden collection (FILE.jsonl#ID or FILE.jsonl.gz#ID), a convolution node of an ONNX model
/// (MODEL.onnx#NODE, a node name or index; its input tensor from --input FILE.npy), or a
/// convolution of a TFLite model (MODEL.tflite#OP_INDEX); see `qconv layers`.
#[derive(Parser)]
#[command(name = "qconv", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    compute: compute::ComputeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Compute a layer's quantized output with one engine model.
    Run(run::Args),
    /// Run several engine models on a layer and show every output element where they differ.
    Compare(compare::Args),
    /// Account for every output element where two engines differ, with the integer evidence.
    Explain(explain::Args),
    /// Predict int16 pair saturation from the weights and the input range, without running it.
    Check(check::Args),
    /// Check an engine model against golden case files or ONNX backend node tests, bit for bit.
    Conformance(conformance::Args),
    /// List the convolutions of an ONNX or TFLite model (the LAYER argument of each).
    Layers(layers::Args),
    /// Time engines on the standard layer suite (ms and GOPS).
    Bench(bench::Args),
    /// Write test vectors for hardware verification: input, weights, bias, requantization
    /// parameters, expected output and a manifest.
    Vectors(vectors::Args),
}

/// A failure the user can fix (bad input, a refused layer): exit code 2.
pub const EXIT_USER_ERROR: u8 = 2;

/// Ends the program after a failed write to standard output: quietly when the reader closed the
/// pipe (with 141, the status of a process ended by SIGPIPE), else with an error.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(EXIT_USER_ERROR as i32)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args, &cli.compute),
        Command::Compare(args) => compare::main(args, &cli.compute),
        Command::Explain(args) => explain::main(args, &cli.compute),
        // check runs no convolution: the computation options do not apply.
        Command::Check(args) => check::main(args),
        Command::Conformance(args) => conformance::main(args, &cli.compute),
        Command::Layers(args) => layers::main(args),
        Command::Bench(args) => bench::main(args, &cli.compute),
        Command::Vectors(args) => vectors::main(args, &cli.compute),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USER_ERROR)
        }
    }
}

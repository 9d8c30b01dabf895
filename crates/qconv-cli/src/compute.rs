//! The options of the fast convolution kernels: global options, used by the commands that compute
//! convolutions (run, compare, explain, conformance, bench; check runs none).

use qconv::kernels::KernelIsa;
use qconv::{Isa, RunOptions};

/// How convolutions are computed: never what they compute (results do not depend on these).
#[derive(clap::Args, Clone, Debug, Default)]
#[command(
    next_help_heading = "Computation (run, compare, explain, conformance, bench; results never depend on it)"
)]
pub struct ComputeArgs {
    /// Threads for the fast convolution kernels. Default: every core (small layers run on one
    /// thread).
    #[arg(long, global = true, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Kernel set for the fast convolution kernels: scalar, avx2, avx-vnni or avx512-vnni (this
    /// CPU must have it). Default: the QCONV_KERNEL environment variable, else the best this CPU
    /// has.
    #[arg(long, global = true, value_name = "NAME", value_parser = parse_kernel)]
    pub kernel: Option<KernelIsa>,
}

impl ComputeArgs {
    /// The engine run options with these settings and `isa`.
    pub fn run_options(&self, isa: Option<Isa>) -> RunOptions {
        RunOptions {
            isa,
            threads: self.threads,
            kernel: self.kernel,
            reference: false,
            accumulator: None,
        }
    }
}

/// Parses a `--threads` value: a positive integer.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("the thread count must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a thread count (a positive integer)")),
    }
}

/// Parses a `--kernel` value: a kernel set this CPU can run.
pub fn parse_kernel(s: &str) -> Result<KernelIsa, String> {
    KernelIsa::by_name(s.trim()).map_err(|e| match e {
        qconv::Error::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

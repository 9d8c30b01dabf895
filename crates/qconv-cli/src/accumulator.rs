//! `--acc-bits` / `--acc-overflow`: model an accumulator narrower than 32 bits (TFLite engines).

use anyhow::Result;
use qconv::RunOptions;
use qconv::engines::narrow::{AccumulatorWidth, Overflow};

/// The accumulator-width options. Unlike --threads and --kernel, these change the results.
#[derive(clap::Args, Clone, Debug)]
pub struct AccArgs {
    /// Model an accumulator of N bits (2 to 32) instead of int32: the bias is loaded first, then
    /// every product is added in the engine's tap order, each sum brought back into N bits.
    /// TFLite engines only (the exact engine ignores it).
    #[arg(long, value_name = "N")]
    pub acc_bits: Option<u32>,
    /// What the narrow accumulator does when a sum leaves its range: saturate (clamp) or wrap
    /// (two's complement). Needs --acc-bits.
    #[arg(long, value_name = "MODE", value_parser = parse_overflow, requires = "acc_bits")]
    pub acc_overflow: Option<Overflow>,
}

fn parse_overflow(s: &str) -> Result<Overflow, String> {
    s.parse().map_err(|e: qconv::Error| match e {
        qconv::Error::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

impl AccArgs {
    /// Sets `options.accumulator` from the arguments.
    pub fn apply(&self, options: &mut RunOptions) -> Result<()> {
        if let Some(bits) = self.acc_bits {
            let overflow = self.acc_overflow.unwrap_or(Overflow::Wrap);
            options.accumulator = Some(AccumulatorWidth::new(bits, overflow)?);
        }
        Ok(())
    }
}

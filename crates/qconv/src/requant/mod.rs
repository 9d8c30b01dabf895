//! Requantization: turning an accumulator into an output integer.
//!
//! Engines differ here in how they build the multiplier (precision, product order, division or
//! reciprocal), where the bias enters (integer accumulator or float), how they round and how they
//! clamp. Each requantizer below is one such scheme, built by an engine model from the layer's
//! parameters with that engine's formulas, then applied per output element.

mod exact;
mod fp32;

pub use exact::ExactRequantizer;
pub use fp32::{FloatBiasFp32Requantizer, FloatBiasTerm, Fp32Requantizer, Fp32Store};

/// Maps one accumulator of output channel `oc` to the output integer.
pub trait Requantizer: Sync {
    /// The accumulator type the scheme consumes.
    type Acc: Copy;
    /// The output integer of an element of channel `oc` whose accumulator is `acc`.
    fn requantize(&self, acc: Self::Acc, oc: usize) -> i32;
}

/// Requantizes NCHW accumulators (`out_channels` channels of `plane` elements each).
pub fn requantize_all<R: Requantizer>(
    r: &R,
    accumulators: &[R::Acc],
    out_channels: usize,
    plane: usize,
) -> Vec<i32> {
    accumulators
        .iter()
        .enumerate()
        .map(|(i, &acc)| r.requantize(acc, i / plane.max(1) % out_channels))
        .collect()
}

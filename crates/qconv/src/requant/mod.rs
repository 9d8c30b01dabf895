//! Requantization: turning an accumulator into an output integer.
//!
//! Engines differ here in how they build the multiplier (precision, product order, division or
//! reciprocal), where the bias enters (integer accumulator or float), how they round and how they
//! clamp. Each requantizer below is one such scheme, built by an engine model from the layer's
//! parameters with that engine's formulas, then applied per output element.

mod exact;
mod fixed_point;
mod fp32;

pub use exact::ExactRequantizer;
pub use fixed_point::{
    FixedPointRequantizer, FixedPointRounding, multiply_by_quantized_multiplier,
    quantize_multiplier, rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
};
pub use fp32::{
    Float64ProductRequantizer, FloatBiasFp32Requantizer, FloatBiasTerm, FloatPostOpsRequantizer,
    Fp32Requantizer, Fp32Store,
};

/// The last steps of one requantization, for explanations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequantTrace {
    /// The value the engine rounds, in output units with the zero point included (as `f64`, for
    /// display; exact for float engines, approximate for the exact scheme).
    pub value: f64,
    /// The integer after rounding and adding the zero point, before any clamp or saturation.
    pub unclamped: i64,
    /// The output integer.
    pub output: i32,
}

/// Maps one accumulator of output channel `oc` to the output integer.
pub trait Requantizer: Sync {
    /// The accumulator type the scheme consumes.
    type Acc: Copy;
    /// The output integer of an element of channel `oc` whose accumulator is `acc`.
    fn requantize(&self, acc: Self::Acc, oc: usize) -> i32;
    /// The same computation, with the value rounded and the integer before clamping.
    fn trace(&self, acc: Self::Acc, oc: usize) -> RequantTrace;
    /// Channel `oc`'s scheme as a float32 run the SIMD kernels compute, when it is one: then
    /// [`crate::kernels::requantize_fp32`] gives exactly what `requantize` gives (int32
    /// accumulators).
    fn fp32_run(&self, _oc: usize) -> Option<crate::kernels::scalar::Fp32Run> {
        None
    }
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

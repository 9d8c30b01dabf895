//! The fast convolution: a [`ConvPlan`] is built once per layer (weights prepared for the chosen
//! kernel set) and run on any number of inputs, in parallel, writing each output through an
//! [`OutputStage`] (the int32 accumulators themselves, or a requantizer fused into the store).
//! It computes one of two reductions, chosen by the engine model:
//!
//! - [`Reduction::Exact`]: `sum (a - a_zp) * (w - w_zp)`, exactly, whenever the result fits in
//!   int32 (which [`ConvPlan::new`] checks).
//! - [`Reduction::PairSaturating`]: the raw u8 x s8 products summed two at a time in saturating
//!   int16, then corrected for zero points in wrapping int32: FBGEMM's and ONNX Runtime's AVX2
//!   arithmetic, run with the same instruction (`vpmaddubsw`) in the same pair order.
//!
//! Three routes (see docs/kernels.md): `planar.rs` (one input channel per group, exact float32
//! sums), `direct.rs` (everything else) and `pairs.rs` (saturating pairs that straddle taps).
//! Results never depend on the thread count or the kernel set: every output element is computed
//! by one thread with the same sequence of operations.

mod direct;
pub mod output;
mod pairs;
mod planar;

use std::sync::Arc;

pub use output::{OutputStage, OutputValue};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::KernelIsa;
use crate::layer::ConvLayer;

/// The element types the fast convolution reads activations from: any integer type holding the
/// quantized values (`u8`, `i8`, `i16`, `i32`).
pub trait InputValue: Copy + Into<i32> + Sync + Send {
    /// The values as bytes when the type is `u8`, for the kernels' direct copies.
    fn as_u8(values: &[Self]) -> Option<&[u8]> {
        let _ = values;
        None
    }
}

impl InputValue for u8 {
    fn as_u8(values: &[u8]) -> Option<&[u8]> {
        Some(values)
    }
}

impl InputValue for i8 {}
impl InputValue for i16 {}
impl InputValue for i32 {}

/// What the plan's kernels compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The exact zero-point-corrected sum.
    Exact,
    /// u8 x s8 products summed in saturating int16 pairs (tap-major order), then corrected.
    PairSaturating,
}

/// The route a plan takes.
enum Route {
    Planar(planar::PlanarPlan),
    Direct(direct::DirectPlan),
    Pairs(pairs::PairGemmPlan),
}

/// A layer prepared for the fast convolution.
pub struct ConvPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    route: Route,
    pool: Option<Arc<rayon::ThreadPool>>,
}

/// The range of `v - zp` over a dtype.
fn max_abs_shifted(dtype: DType, zp: i32) -> i64 {
    (zp as i64 - dtype.min())
        .abs()
        .max((dtype.max() - zp as i64).abs())
}

impl ConvPlan {
    /// Prepares `layer` for `reduction` with the `kernel` set on `threads` threads (1: the
    /// calling thread). Returns `Ok(None)` when the fast path cannot compute this reduction
    /// exactly as asked (an exact sum that may not fit in int32; saturating pairs on types other
    /// than u8 x s8), so the caller falls back to the reference loop.
    pub fn new(
        layer: &ConvLayer,
        reduction: Reduction,
        kernel: KernelIsa,
        threads: usize,
    ) -> Result<Option<ConvPlan>> {
        let g = layer.geometry;
        let k_len = g.reduction_len();
        let (x, w) = (layer.input.dtype, layer.weight.dtype);
        let quant = &layer.weight.quant;
        match reduction {
            Reduction::Exact => {
                let wmax = (0..g.out_channels)
                    .map(|oc| max_abs_shifted(w, quant.zero_point(oc)))
                    .max()
                    .unwrap_or(0);
                let bound = k_len as i128
                    * max_abs_shifted(x, layer.input.zero_point) as i128
                    * wmax as i128;
                if bound > i32::MAX as i128 {
                    return Ok(None);
                }
            }
            Reduction::PairSaturating => {
                if x != DType::Uint8 || w != DType::Int8 {
                    return Ok(None);
                }
            }
        }
        // Waking other threads costs microseconds: layers this small run on the caller's.
        const MIN_PARALLEL_MACS: u64 = 1 << 18;
        let pool = if threads > 1 && g.macs() >= MIN_PARALLEL_MACS {
            Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::invalid("threads", e.to_string()))?,
            ))
        } else {
            None
        };
        let planar = planar::PlanarPlan::new(layer, reduction, kernel);
        let route = match planar {
            Some(p) => Route::Planar(p),
            None => match direct::DirectPlan::new(layer, reduction, kernel) {
                Some(d) => Route::Direct(d),
                None => Route::Pairs(pairs::PairGemmPlan::new(layer, kernel)),
            },
        };
        Ok(Some(ConvPlan {
            g,
            kernel,
            route,
            pool,
        }))
    }

    /// The kernel set the plan runs.
    pub fn kernel(&self) -> KernelIsa {
        self.kernel
    }

    /// The kernel route, in words.
    pub fn route(&self) -> String {
        let what = match &self.route {
            Route::Planar(p) if p.saturating() => {
                "planar float32 sums, u8 x s8 tap pairs in saturating int16"
            }
            Route::Planar(_) => "planar float32 sums, exact",
            Route::Direct(d) => d.route(),
            Route::Pairs(_) => "NHWC-row GEMM, u8 x s8 pairs in saturating int16",
        };
        format!("{} kernels, {what}", self.kernel)
    }

    /// Runs the convolution on NCHW `input`, writing `stage`'s outputs into NCHW `out`.
    pub fn run<I, S>(&self, input: &[I], out: &mut [S::Out], stage: &S)
    where
        I: InputValue,
        S: OutputStage,
    {
        let g = &self.g;
        assert_eq!(
            input.len(),
            g.input_shape().iter().product::<usize>(),
            "input length"
        );
        assert_eq!(
            out.len(),
            g.output_shape().iter().product::<usize>(),
            "output length"
        );
        let mut run = || match &self.route {
            Route::Planar(p) => p.run(self.pool.as_deref(), input, out, stage),
            Route::Direct(d) => d.run(self.pool.as_deref(), input, out, stage),
            Route::Pairs(p) => p.run(self.pool.as_ref(), input, out, stage),
        };
        // One entry into the pool for the whole call: the routes' parallel phases (copy, then
        // tiles) then run back to back on threads that are already awake (`install` from a pool
        // thread runs in place), instead of handing the call to the pool and back per phase.
        match &self.pool {
            Some(pool) => pool.install(run),
            None => run(),
        }
    }
}

/// Runs `work` on every task: on `pool`'s threads when there is one, else on the caller's.
fn for_each_task<T: Send>(
    pool: Option<&rayon::ThreadPool>,
    tasks: &mut [T],
    work: impl Fn(&mut T) + Sync + Send,
) {
    match pool {
        Some(pool) => pool.install(|| {
            use rayon::prelude::*;
            tasks.par_iter_mut().for_each(work);
        }),
        None => tasks.iter_mut().for_each(work),
    }
}

/// Writes one input row into its column phases (stride `sw`, `left` columns of padding before
/// it): column `ix` goes to position `(ix + left) / sw` of phase `(ix + left) % sw`, whose row
/// starts at `row_start(phase)` in `dst`. Strides 1 and 2 take loops the compiler vectorizes.
#[inline(always)]
fn split_row<I: Copy, T: Copy>(
    row: &[I],
    left: usize,
    sw: usize,
    row_start: impl Fn(usize) -> usize,
    dst: &mut [T],
    convert: &impl Fn(I) -> T,
) {
    let w = row.len();
    match sw {
        1 => {
            let at = row_start(0) + left;
            for (d, &v) in dst[at..at + w].iter_mut().zip(row) {
                *d = convert(v);
            }
        }
        2 => {
            // Even and odd columns in one pass.
            let (pa, pb) = (left % 2, (left + 1) % 2);
            let (a0, b0) = (row_start(pa) + left / 2, row_start(pb) + left.div_ceil(2));
            let pairs = w / 2;
            let (first, second) = if a0 < b0 {
                let (x, y) = dst.split_at_mut(b0);
                (&mut x[a0..a0 + pairs], &mut y[..pairs])
            } else {
                let (x, y) = dst.split_at_mut(a0);
                (&mut y[..pairs], &mut x[b0..b0 + pairs])
            };
            for ((pair, a), b) in row.chunks_exact(2).zip(first).zip(second) {
                *a = convert(pair[0]);
                *b = convert(pair[1]);
            }
            if w % 2 == 1 {
                dst[a0 + pairs] = convert(row[w - 1]);
            }
        }
        _ => {
            for (ix, &v) in row.iter().enumerate() {
                let x = ix + left;
                dst[row_start(x % sw) + x / sw] = convert(v);
            }
        }
    }
}

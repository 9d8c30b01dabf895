//! The fast convolution: packed weights, per-tile im2col, register-tiled SIMD kernels, and an
//! output stage that applies zero-point corrections and hands each accumulator to the caller's
//! requantizer, in parallel over output pixels.
//!
//! A [`ConvPlan`] is built once per layer (weights packed for the chosen kernel set) and run on
//! any number of inputs. It computes one of two reductions, chosen by the engine model:
//!
//! - [`Reduction::Exact`]: `sum (a - a_zp) * (w - w_zp)`, exactly. Kernels: AVX-512-VNNI and
//!   AVX-VNNI `vpdpbusd` on u8 x s8 (other type combinations are shifted into u8 x s8 exactly, the
//!   shift absorbed by the zero-point corrections), AVX2 `vpmaddwd` on zero-point-free i16 values,
//!   or the scalar kernel. Exact whenever the result fits in int32, which [`ConvPlan::new`] checks.
//! - [`Reduction::PairSaturating`]: the raw u8 x s8 products summed two at a time in saturating
//!   int16, then corrected for zero points in wrapping int32: FBGEMM's and ONNX Runtime's AVX2
//!   arithmetic, run with the same instruction (`vpmaddubsw`) in the same pair order.
//!
//! Layers with one input and one output channel per group use the depthwise kernel instead
//! (see `depthwise.rs`). Results never depend on the thread count: every output element is
//! computed by one thread with the same sequence of operations.

mod depthwise;

use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::kernels::{KernelIsa, scalar};
use crate::layer::ConvLayer;

/// What the plan's kernels compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The exact zero-point-corrected sum.
    Exact,
    /// u8 x s8 products summed in saturating int16 pairs (tap-major order), then corrected.
    PairSaturating,
}

/// The kernel family a plan packs for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// Quad-packed u8 x s8 panels; `pairs` selects the saturating kernels.
    U8S8 { pairs: bool },
    /// Pair-packed i16 panels holding values with the zero points subtracted.
    I16,
    /// The depthwise kernel.
    Depthwise,
}

/// A layer prepared for the fast convolution.
pub struct ConvPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    family: Family,
    mr: usize,
    nr: usize,
    /// Reduction length per group, and the number of quads / pairs it is padded to.
    k_len: usize,
    steps: usize,
    /// Added to raw activations before packing (128 maps int8 onto uint8 exactly).
    activation_offset: i32,
    /// The input zero point as packed (offset included; raw for the i16 family).
    input_zero_point: i32,
    /// Weight panels: per group, per tile of `nr` output channels, `steps * nr * width` values.
    b_u8s8: Vec<i8>,
    b_i16: Vec<i16>,
    panel_len: usize,
    n_tiles: usize,
    /// Per output channel: the constant part of the zero-point correction, and the weight zero
    /// point (as packed) that multiplies each row's activation sum.
    column_correction: Vec<i32>,
    weight_zero_points: Vec<i32>,
    needs_row_sums: bool,
    depthwise: Option<depthwise::DepthwisePlan>,
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
        let zero_points: Vec<i32> = (0..g.out_channels).map(|oc| quant.zero_point(oc)).collect();
        match reduction {
            Reduction::Exact => {
                let wmax = zero_points
                    .iter()
                    .map(|&z| max_abs_shifted(w, z))
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
        let pool = if threads > 1 {
            Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::invalid("threads", e.to_string()))?,
            ))
        } else {
            None
        };
        let depthwise_shape = g.group_in_channels() == 1 && g.group_out_channels() == 1;
        if depthwise_shape && reduction == Reduction::Exact {
            return Ok(Some(ConvPlan {
                g,
                kernel,
                family: Family::Depthwise,
                mr: 0,
                nr: 0,
                k_len,
                steps: 0,
                activation_offset: 0,
                input_zero_point: layer.input.zero_point,
                b_u8s8: Vec::new(),
                b_i16: Vec::new(),
                panel_len: 0,
                n_tiles: 0,
                column_correction: Vec::new(),
                weight_zero_points: Vec::new(),
                needs_row_sums: false,
                depthwise: Some(depthwise::DepthwisePlan::new(layer, kernel)),
                pool,
            }));
        }

        let (family, (mr, nr)) = match reduction {
            Reduction::PairSaturating => (Family::U8S8 { pairs: true }, pairs_tile(kernel)),
            Reduction::Exact => match vnni_tile(kernel) {
                Some(tile) => (Family::U8S8 { pairs: false }, tile),
                None if kernel.has_avx2() => (Family::I16, avx2_tile()),
                None => (Family::U8S8 { pairs: false }, (4, 8)),
            },
        };
        // Shift int8 activations / uint8 weights onto u8 x s8 for the u8 x s8 family (exact
        // for the exact sum; the pair family only takes raw u8 x s8).
        let (activation_offset, weight_offset) = match family {
            Family::U8S8 { pairs: false } => (
                if x == DType::Int8 { 128 } else { 0 },
                if w == DType::Uint8 { -128 } else { 0 },
            ),
            _ => (0, 0),
        };
        let width = if family == Family::I16 { 2 } else { 4 };
        let steps = k_len.div_ceil(width);
        let ocg = g.group_out_channels();
        let n_tiles = ocg.div_ceil(nr);
        let panel_len = steps * nr * width;
        let rows = crate::accumulate::pack_weight_rows(
            &g,
            crate::geometry::ReductionOrder::TapMajor,
            &layer.weight.data,
        );
        let weight_at = |oc: usize, k: usize| rows[oc * k_len + k];
        let mut b_u8s8 = Vec::new();
        let mut b_i16 = Vec::new();
        for grp in 0..g.groups {
            for t in 0..n_tiles {
                for s in 0..steps {
                    for n in 0..nr {
                        let local = t * nr + n;
                        for i in 0..width {
                            let k = s * width + i;
                            let value = if local < ocg && k < k_len {
                                let oc = grp * ocg + local;
                                match family {
                                    Family::I16 => weight_at(oc, k) - zero_points[oc],
                                    _ => weight_at(oc, k) + weight_offset,
                                }
                            } else {
                                0
                            };
                            match family {
                                Family::I16 => b_i16.push(value as i16),
                                _ => b_u8s8.push(value as i8),
                            }
                        }
                    }
                }
            }
        }
        let input_zero_point = match family {
            Family::I16 => layer.input.zero_point,
            _ => layer.input.zero_point + activation_offset,
        };
        let packed_zero_points: Vec<i32> = zero_points.iter().map(|&z| z + weight_offset).collect();
        let (column_correction, needs_row_sums) = match family {
            Family::I16 => (vec![0; g.out_channels], false),
            _ => {
                let az = input_zero_point;
                let correction = (0..g.out_channels)
                    .map(|oc| {
                        let sum = (0..k_len).fold(0i32, |s, k| {
                            s.wrapping_add(weight_at(oc, k) + weight_offset)
                        });
                        (k_len as i32)
                            .wrapping_mul(az)
                            .wrapping_mul(packed_zero_points[oc])
                            .wrapping_sub(az.wrapping_mul(sum))
                    })
                    .collect();
                (correction, packed_zero_points.iter().any(|&z| z != 0))
            }
        };
        Ok(Some(ConvPlan {
            g,
            kernel,
            family,
            mr,
            nr,
            k_len,
            steps,
            activation_offset,
            input_zero_point,
            b_u8s8,
            b_i16,
            panel_len,
            n_tiles,
            column_correction,
            weight_zero_points: packed_zero_points,
            needs_row_sums,
            depthwise: None,
            pool,
        }))
    }

    /// The kernel set the plan runs.
    pub fn kernel(&self) -> KernelIsa {
        self.kernel
    }

    /// The kernel route, in words.
    pub fn route(&self) -> String {
        let what = match self.family {
            Family::U8S8 { pairs: true } => "u8 x s8 pairs in saturating int16",
            Family::U8S8 { pairs: false } => "u8 x s8, exact int32",
            Family::I16 => "i16 x i16, exact int32",
            Family::Depthwise => "depthwise, exact int32",
        };
        format!("{} kernels, {what}", self.kernel)
    }

    /// Runs the convolution on NCHW `input` and writes `store(acc, oc)` for every output element
    /// into NCHW `out`.
    pub fn run<I, T, F>(&self, input: &[I], out: &mut [T], store: &F)
    where
        I: Copy + Into<i32> + Sync,
        T: Send,
        F: Fn(i32, usize) -> T + Sync,
    {
        let g = &self.g;
        let [n_len, oc_len, oh, ow] = g.output_shape();
        let plane = oh * ow;
        assert_eq!(
            input.len(),
            g.input_shape().iter().product::<usize>(),
            "input length"
        );
        assert_eq!(out.len(), n_len * oc_len * plane, "output length");
        if let Some(dw) = &self.depthwise {
            return dw.run(g, self.pool.as_deref(), input, out, store);
        }
        let threads = self.pool.as_ref().map_or(1, |p| p.current_num_threads());
        let tile = self.mr;
        let chunk = if threads == 1 {
            plane
        } else {
            (plane.div_ceil(threads * 4)).div_ceil(tile).max(1) * tile
        };
        let nhwc = self.to_nhwc(input);
        let mut tasks = split_output(out, n_len, oc_len, plane, chunk);
        let work = |task: &mut Task<T>| self.run_task(&nhwc, task, store);
        match &self.pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                tasks.par_iter_mut().for_each(work);
            }),
            None => tasks.iter_mut().for_each(work),
        }
    }

    /// The input in NHWC order, shifted as the family packs it.
    fn to_nhwc<I: Copy + Into<i32>>(&self, input: &[I]) -> Nhwc {
        let g = &self.g;
        let [n_len, c_len, h, w] = g.input_shape();
        let index = |n: usize, c: usize, y: usize, x: usize| ((n * c_len + c) * h + y) * w + x;
        match self.family {
            Family::I16 => {
                let zp = self.input_zero_point;
                let mut v = vec![0i16; input.len()];
                for n in 0..n_len {
                    for c in 0..c_len {
                        for y in 0..h {
                            for x in 0..w {
                                v[((n * h + y) * w + x) * c_len + c] =
                                    (input[index(n, c, y, x)].into() - zp) as i16;
                            }
                        }
                    }
                }
                Nhwc::I16(v)
            }
            _ => {
                let off = self.activation_offset;
                let mut v = vec![0u8; input.len()];
                for n in 0..n_len {
                    for c in 0..c_len {
                        for y in 0..h {
                            for x in 0..w {
                                v[((n * h + y) * w + x) * c_len + c] =
                                    (input[index(n, c, y, x)].into() + off) as u8;
                            }
                        }
                    }
                }
                Nhwc::U8(v)
            }
        }
    }

    fn run_task<T, F>(&self, nhwc: &Nhwc, task: &mut Task<T>, store: &F)
    where
        F: Fn(i32, usize) -> T,
    {
        let g = &self.g;
        let (mr, nr) = (self.mr, self.nr);
        let ocg = g.group_out_channels();
        let width = if self.family == Family::I16 { 2 } else { 4 };
        let mut a8 = vec![0u8; self.steps * mr * width];
        let mut a16 = vec![0i16; self.steps * mr * width];
        let mut row_sums = vec![0i32; mr];
        let mut c = vec![0i32; mr * nr];
        for grp in 0..g.groups {
            let mut m0 = task.p0;
            while m0 < task.p1 {
                let rows = mr.min(task.p1 - m0);
                match nhwc {
                    Nhwc::U8(x) => self.pack_u8(x, task.n, grp, m0, rows, &mut a8, &mut row_sums),
                    Nhwc::I16(x) => self.pack_i16(x, task.n, grp, m0, rows, &mut a16),
                }
                for t in 0..self.n_tiles {
                    self.tile_product(grp, t, &a8, &a16, &mut c);
                    for local in t * nr..((t + 1) * nr).min(ocg) {
                        let oc = grp * ocg + local;
                        let n = local - t * nr;
                        let out = &mut task.channels[oc][m0 - task.p0..m0 - task.p0 + rows];
                        let cc = self.column_correction.get(oc).copied().unwrap_or(0);
                        let wz = self.weight_zero_points.get(oc).copied().unwrap_or(0);
                        for (m, slot) in out.iter_mut().enumerate() {
                            let mut acc = c[m * nr + n].wrapping_add(cc);
                            if self.needs_row_sums {
                                acc = acc.wrapping_sub(wz.wrapping_mul(row_sums[m]));
                            }
                            *slot = store(acc, oc);
                        }
                    }
                }
                m0 += rows;
            }
        }
    }

    /// One register tile: `C = A * B[grp][t]`.
    fn tile_product(&self, grp: usize, t: usize, a8: &[u8], a16: &[i16], c: &mut [i32]) {
        let start = (grp * self.n_tiles + t) * self.panel_len;
        let (mr, nr, steps) = (self.mr, self.nr, self.steps);
        match self.family {
            Family::I16 => {
                let b = &self.b_i16[start..start + self.panel_len];
                dispatch_i16(self.kernel, mr, nr, steps, a16, b, c);
            }
            Family::U8S8 { pairs } => {
                let b = &self.b_u8s8[start..start + self.panel_len];
                dispatch_u8s8(self.kernel, pairs, mr, nr, steps, a8, b, c);
            }
            Family::Depthwise => unreachable!("depthwise plans do not tile"),
        }
    }

    /// Packs the im2col rows of output pixels `m0 .. m0 + rows` of group `grp` into the
    /// quad-packed A panel, with their activation sums.
    #[allow(clippy::too_many_arguments)]
    fn pack_u8(
        &self,
        x: &[u8],
        n: usize,
        grp: usize,
        m0: usize,
        rows: usize,
        a: &mut [u8],
        sums: &mut [i32],
    ) {
        let g = &self.g;
        let (cg, c_len, mr) = (g.group_in_channels(), g.in_channels, self.mr);
        let pad = self.input_zero_point as u8;
        let ow_len = g.out_w();
        for m in 0..rows {
            let p = m0 + m;
            let (oh, ow) = (p / ow_len, p % ow_len);
            let mut sum = 0i32;
            let mut k = 0;
            for r in 0..g.kernel[0] {
                for s in 0..g.kernel[1] {
                    match g.tap_position(oh, ow, r, s) {
                        Some((ih, iw)) => {
                            let base = ((n * g.in_h + ih) * g.in_w + iw) * c_len + grp * cg;
                            for &v in &x[base..base + cg] {
                                a[(k / 4) * mr * 4 + m * 4 + k % 4] = v;
                                sum += v as i32;
                                k += 1;
                            }
                        }
                        None => {
                            for _ in 0..cg {
                                a[(k / 4) * mr * 4 + m * 4 + k % 4] = pad;
                                k += 1;
                            }
                            sum += pad as i32 * cg as i32;
                        }
                    }
                }
            }
            sums[m] = sum;
        }
        let _ = self.k_len;
    }

    /// Packs the zero-point-free i16 im2col rows into the pair-packed A panel (padding is 0).
    fn pack_i16(&self, x: &[i16], n: usize, grp: usize, m0: usize, rows: usize, a: &mut [i16]) {
        let g = &self.g;
        let (cg, c_len, mr) = (g.group_in_channels(), g.in_channels, self.mr);
        let ow_len = g.out_w();
        for m in 0..rows {
            let p = m0 + m;
            let (oh, ow) = (p / ow_len, p % ow_len);
            let mut k = 0;
            for r in 0..g.kernel[0] {
                for s in 0..g.kernel[1] {
                    match g.tap_position(oh, ow, r, s) {
                        Some((ih, iw)) => {
                            let base = ((n * g.in_h + ih) * g.in_w + iw) * c_len + grp * cg;
                            for &v in &x[base..base + cg] {
                                a[(k / 2) * mr * 2 + m * 2 + k % 2] = v;
                                k += 1;
                            }
                        }
                        None => {
                            for _ in 0..cg {
                                a[(k / 2) * mr * 2 + m * 2 + k % 2] = 0;
                                k += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The input in NHWC order.
enum Nhwc {
    U8(Vec<u8>),
    I16(Vec<i16>),
}

/// A range of output pixels of one batch item, with the output slices of every channel.
struct Task<'a, T> {
    n: usize,
    p0: usize,
    p1: usize,
    channels: Vec<&'a mut [T]>,
}

/// Splits NCHW `out` into tasks of `chunk` pixels per batch item.
fn split_output<T>(
    out: &mut [T],
    n_len: usize,
    oc_len: usize,
    plane: usize,
    chunk: usize,
) -> Vec<Task<'_, T>> {
    let per_item = plane.div_ceil(chunk.max(1));
    let mut tasks: Vec<Task<T>> = Vec::with_capacity(n_len * per_item);
    for n in 0..n_len {
        for j in 0..per_item {
            let p0 = j * chunk;
            tasks.push(Task {
                n,
                p0,
                p1: (p0 + chunk).min(plane),
                channels: Vec::with_capacity(oc_len),
            });
        }
    }
    for (i, channel) in out.chunks_mut(plane).enumerate() {
        let n = i / oc_len;
        for (j, piece) in channel.chunks_mut(chunk.max(1)).enumerate() {
            tasks[n * per_item + j].channels.push(piece);
        }
    }
    tasks
}

fn vnni_tile(kernel: KernelIsa) -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::x86::u8s8_tile(kernel)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernel;
        None
    }
}

fn avx2_tile() -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::x86::AVX2_TILE
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (4, 8)
    }
}

fn pairs_tile(kernel: KernelIsa) -> (usize, usize) {
    if kernel.has_avx2() {
        avx2_tile()
    } else {
        (4, 8)
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_u8s8(
    kernel: KernelIsa,
    pairs: bool,
    mr: usize,
    nr: usize,
    kq: usize,
    a: &[u8],
    b: &[i8],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if pairs && kernel.has_avx2() {
            return crate::kernels::x86::gemm_u8s8_pairs(kernel, kq, a, b, c);
        }
        if !pairs && vnni_tile(kernel).is_some() {
            return crate::kernels::x86::gemm_u8s8(kernel, kq, a, b, c);
        }
    }
    if pairs {
        scalar::gemm_u8s8_pairs(mr, nr, kq, a, b, c)
    } else {
        scalar::gemm_u8s8(mr, nr, kq, a, b, c)
    }
}

fn dispatch_i16(
    kernel: KernelIsa,
    mr: usize,
    nr: usize,
    kp: usize,
    a: &[i16],
    b: &[i16],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if kernel.has_avx2() {
            return crate::kernels::x86::gemm_i16(kernel, kp, a, b, c);
        }
    }
    let _ = kernel;
    scalar::gemm_i16(mr, nr, kp, a, b, c)
}

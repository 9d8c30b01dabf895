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
//! Layers with one input channel per group (depthwise, channel multipliers, single-channel
//! inputs) take the planar route instead when its float32 sums are exact (see `planar.rs`). Results never depend on the thread count: every output element is
//! computed by one thread with the same sequence of operations.

mod direct;
mod planar;
pub mod output;

use std::sync::Arc;

pub use output::{OutputStage, OutputValue};

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
    /// The planar kernel.
    Planar,
    /// The direct kernels.
    Direct,
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
    /// Indirect mode: A rows are read in place from a spatially padded NHWC copy of the input,
    /// one pointer per run and row. In the packed mode (odd channel counts on the pair kernels)
    /// rows are copied into a panel.
    indirect: bool,
    /// The indirect layout: how many contiguous runs make up one row of A, how many real values
    /// each run has, and the run length padded to the kernel width.
    runs: RunLayout,
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
    planar: Option<planar::PlanarPlan>,
    direct: Option<direct::DirectPlan>,
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
        let planar = match reduction {
            Reduction::Exact => planar::PlanarPlan::new(layer, kernel),
            Reduction::PairSaturating => None,
        };
        let direct = match planar {
            Some(_) => None,
            None => direct::DirectPlan::new(layer, reduction, kernel),
        };
        if planar.is_some() || direct.is_some() {
            let family = if planar.is_some() { Family::Planar } else { Family::Direct };
            return Ok(Some(ConvPlan {
                g,
                kernel,
                family,
                mr: 0,
                nr: 0,
                k_len,
                steps: 0,
                indirect: false,
                runs: RunLayout::default(),
                activation_offset: 0,
                input_zero_point: layer.input.zero_point,
                b_u8s8: Vec::new(),
                b_i16: Vec::new(),
                panel_len: 0,
                n_tiles: 0,
                column_correction: Vec::new(),
                weight_zero_points: Vec::new(),
                needs_row_sums: false,
                planar,
                direct,
                pool,
            }));
        }

        let cg = g.group_in_channels();
        // Indirect runs: a whole kernel row (kw pixels x C channels, contiguous in NHWC) when
        // there is one group and no horizontal dilation, else one tap's channels. Pairs must not
        // straddle runs, so a run must hold an even number of values for the pair kernels.
        let row_runs = g.groups == 1 && g.dilation[1] == 1;
        let run_len = if row_runs { g.kernel[1] * cg } else { cg };
        let indirect = reduction == Reduction::Exact || run_len % 2 == 0;
        let (family, (mr, nr)) = match reduction {
            Reduction::PairSaturating => (Family::U8S8 { pairs: true }, pairs_tile(kernel)),
            Reduction::Exact => match exact_tile(kernel, indirect) {
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
        let runs = RunLayout {
            row_runs,
            count: if row_runs { g.kernel[0] } else { g.kernel[0] * g.kernel[1] },
            len: run_len,
            padded: run_len.div_ceil(width) * width,
        };
        let steps = if indirect {
            runs.count * runs.padded / width
        } else {
            k_len.div_ceil(width)
        };
        let ocg = g.group_out_channels();
        let n_tiles = ocg.div_ceil(nr);
        let panel_len = steps * nr * width;
        let rows = crate::accumulate::pack_weight_rows(
            &g,
            crate::geometry::ReductionOrder::TapMajor,
            &layer.weight.data,
        );
        let weight_at = |oc: usize, k: usize| rows[oc * k_len + k];
        // The tap-major reduction index of panel position `kk`, if it holds a real weight.
        let reduction_index = |kk: usize| -> Option<usize> {
            if indirect {
                let (u, j) = (kk / runs.padded, kk % runs.padded);
                // Runs are consecutive in the tap-major order either way.
                (j < runs.len).then_some(u * runs.len + j)
            } else {
                (kk < k_len).then_some(kk)
            }
        };
        let mut b_u8s8 = Vec::new();
        let mut b_i16 = Vec::new();
        for grp in 0..g.groups {
            for t in 0..n_tiles {
                for s in 0..steps {
                    for n in 0..nr {
                        let local = t * nr + n;
                        for i in 0..width {
                            let value = match reduction_index(s * width + i) {
                                Some(k) if local < ocg => {
                                    let oc = grp * ocg + local;
                                    match family {
                                        Family::I16 => weight_at(oc, k) - zero_points[oc],
                                        _ => weight_at(oc, k) + weight_offset,
                                    }
                                }
                                _ => 0,
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
            indirect,
            runs,
            activation_offset,
            input_zero_point,
            b_u8s8,
            b_i16,
            panel_len,
            n_tiles,
            column_correction,
            weight_zero_points: packed_zero_points,
            needs_row_sums,
            planar: None,
            direct: None,
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
            Family::Planar => "planar float32 sums, exact",
            Family::Direct => self.direct.as_ref().map_or("direct", |d| d.route()),
        };
        format!("{} kernels, {what}", self.kernel)
    }

    /// Runs the convolution on NCHW `input`, writing `stage`'s outputs into NCHW `out`.
    pub fn run<I, S>(&self, input: &[I], out: &mut [S::Out], stage: &S)
    where
        I: Copy + Into<i32> + Sync,
        S: OutputStage,
    {
        let g = &self.g;
        let [n_len, oc_len, oh, ow] = g.output_shape();
        let plane = oh * ow;
        assert_eq!(input.len(), g.input_shape().iter().product::<usize>(), "input length");
        assert_eq!(out.len(), n_len * oc_len * plane, "output length");
        if let Some(planar) = &self.planar {
            return planar.run(self.pool.as_deref(), input, out, stage);
        }
        if let Some(direct) = &self.direct {
            return direct.run(self.pool.as_deref(), input, out, stage);
        }
        let threads = self.pool.as_ref().map_or(1, |p| p.current_num_threads());
        let tile = self.mr;
        let chunk = if threads == 1 {
            plane
        } else {
            (plane.div_ceil(threads * 4)).div_ceil(tile).max(1) * tile
        };
        let layout = self.input_layout();
        let nhwc = match self.family {
            Family::I16 => {
                let zp = self.input_zero_point;
                Nhwc::I16(to_nhwc(g, input, &layout, 0, |v| (v - zp) as i16))
            }
            _ => {
                let off = self.activation_offset;
                let pad = self.input_zero_point as u8;
                Nhwc::U8(to_nhwc(g, input, &layout, pad, |v| (v + off) as u8))
            }
        };
        let group_sums = match (&nhwc, self.needs_row_sums) {
            (Nhwc::U8(x), true) => group_sums(g, x, &layout),
            _ => Vec::new(),
        };
        let mut tasks = split_output(out, n_len, oc_len, plane, chunk);
        let work = |task: &mut Task<S::Out>| {
            let job = TaskJob {
                plan: self,
                nhwc: &nhwc,
                layout: &layout,
                group_sums: &group_sums,
                task,
                stage,
            };
            crate::kernels::with_isa(self.kernel, job)
        };
        match &self.pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                tasks.par_iter_mut().for_each(work);
            }),
            None => tasks.iter_mut().for_each(work),
        }
    }

    #[inline(always)]
    fn run_task<S: OutputStage>(&self, nhwc: &Nhwc, task: &mut Task<S::Out>, stage: &S) {
        let g = &self.g;
        let (mr, nr) = (self.mr, self.nr);
        let ocg = g.group_out_channels();
        let width = if self.family == Family::I16 { 2 } else { 4 };
        let mut a8 = vec![0u8; self.steps * mr * width];
        let mut a16 = vec![0i16; self.steps * mr * width];
        let mut row8 = vec![0u8; self.steps * width];
        let mut row16 = vec![0i16; self.steps * width];
        let mut row_sums = vec![0i32; mr];
        let mut c = vec![0i32; mr * nr];
        let mut values = vec![S::Out::default(); mr * nr];
        for grp in 0..g.groups {
            let mut m0 = task.p0;
            while m0 < task.p1 {
                let rows = mr.min(task.p1 - m0);
                match nhwc {
                    Nhwc::U8(x) => {
                        let pad = self.input_zero_point as u8;
                        let at = (task.n, grp, m0, rows);
                        self.pack(x, pad, at, &mut row8, &mut a8, Some(&mut row_sums))
                    }
                    Nhwc::I16(x) => {
                        let at = (task.n, grp, m0, rows);
                        self.pack(x, 0, at, &mut row16, &mut a16, None)
                    }
                }
                for t in 0..self.n_tiles {
                    self.tile_product(grp, t, &a8, &a16, &mut c);
                    let oc0 = grp * ocg + t * nr;
                    self.finish_tile(&mut c, &row_sums, (oc0, m0, rows), &mut values, task, stage);
                }
                m0 += rows;
            }
        }
    }

    /// The NHWC copy of the input this plan reads.
    fn input_layout(&self) -> InputLayout {
        let g = &self.g;
        let cg = g.group_in_channels();
        if !self.indirect {
            // The packed mode reads an unpadded copy with contiguous channels.
            return InputLayout {
                border: [0; 4],
                segment: cg,
                slack: 0,
            };
        }
        let p = g.padding;
        InputLayout {
            border: [p.top, p.left, p.bottom, p.right],
            // Row runs read whole pixels; tap runs read each group's channels, padded.
            segment: if self.runs.row_runs { cg } else { self.runs.padded },
            slack: self.runs.padded,
        }
    }

    /// Indirect mode: A rows are read in place through per-run offsets into the padded NHWC copy.
    #[inline(always)]
    fn run_task_indirect<S: OutputStage>(
        &self,
        nhwc: &Nhwc,
        layout: &InputLayout,
        group_sums: &[i32],
        task: &mut Task<S::Out>,
        stage: &S,
    ) {
        let g = &self.g;
        let (mr, nr) = (self.mr, self.nr);
        let ocg = g.group_out_channels();
        let runs = self.runs;
        let (hp, wp) = layout.padded_size(g);
        let cv = layout.segment * g.groups;
        let per_run = runs.padded / if self.family == Family::I16 { 2 } else { 4 };
        let mut offsets = vec![0usize; runs.count * mr];
        let mut row_sums = vec![0i32; mr];
        let mut c = vec![0i32; mr * nr];
        let mut values = vec![S::Out::default(); mr * nr];
        let ow_len = g.out_w();
        let n = task.n;
        let pixel = move |y: usize, x: usize| (n * hp + y) * wp + x;
        for grp in 0..g.groups {
            let mut m0 = task.p0;
            while m0 < task.p1 {
                let rows = mr.min(task.p1 - m0);
                for m in 0..mr {
                    // Rows past the tile repeat its last pixel; their outputs are dropped.
                    let p = m0 + m.min(rows - 1);
                    let (y0, x0) = ((p / ow_len) * g.stride[0], (p % ow_len) * g.stride[1]);
                    for u in 0..runs.count {
                        let (r, s) = if runs.row_runs {
                            (u, 0)
                        } else {
                            (u / g.kernel[1], u % g.kernel[1])
                        };
                        let at = pixel(y0 + r * g.dilation[0], x0 + s * g.dilation[1]);
                        offsets[u * mr + m] = at * cv + grp * layout.segment;
                    }
                    if self.needs_row_sums {
                        let mut sum = 0i32;
                        for r in 0..g.kernel[0] {
                            for s in 0..g.kernel[1] {
                                let at = pixel(y0 + r * g.dilation[0], x0 + s * g.dilation[1]);
                                sum = sum.wrapping_add(group_sums[at * g.groups + grp]);
                            }
                        }
                        row_sums[m] = sum;
                    }
                }
                for t in 0..self.n_tiles {
                    let start = (grp * self.n_tiles + t) * self.panel_len;
                    let b = start..start + self.panel_len;
                    let shape = (mr, nr, runs.count, per_run);
                    match (nhwc, self.family) {
                        (Nhwc::U8(x), Family::U8S8 { pairs }) => dispatch_igemm_u8s8(
                            self.kernel,
                            pairs,
                            shape,
                            x,
                            &offsets,
                            &self.b_u8s8[b],
                            &mut c,
                        ),
                        (Nhwc::I16(x), _) => {
                            dispatch_igemm_i16(self.kernel, shape, x, &offsets, &self.b_i16[b], &mut c)
                        }
                        _ => unreachable!("the NHWC type follows the family"),
                    }
                    let oc0 = grp * ocg + t * nr;
                    self.finish_tile(&mut c, &row_sums, (oc0, m0, rows), &mut values, task, stage);
                }
                m0 += rows;
            }
        }
    }

    /// The output stage of one tile: zero-point corrections, the stage's row conversion, and the
    /// transposed store into the channels' output rows.
    #[inline(always)]
    fn finish_tile<S: OutputStage>(
        &self,
        c: &mut [i32],
        row_sums: &[i32],
        (oc0, m0, rows): (usize, usize, usize),
        values: &mut [S::Out],
        task: &mut Task<S::Out>,
        stage: &S,
    ) {
        let nr = self.nr;
        let cols = nr.min(self.g.group_out_channels() - (oc0 % self.g.group_out_channels()));
        for m in 0..rows {
            let accs = &mut c[m * nr..m * nr + cols];
            if self.family != Family::I16 {
                let cc = &self.column_correction[oc0..oc0 + cols];
                let wz = &self.weight_zero_points[oc0..oc0 + cols];
                let rs = row_sums[m];
                for ((a, &cc), &wz) in accs.iter_mut().zip(cc).zip(wz) {
                    *a = a.wrapping_add(cc).wrapping_sub(wz.wrapping_mul(rs));
                }
            }
            stage.row(accs, oc0, &mut values[m * nr..m * nr + cols]);
        }
        let p = m0 - task.p0;
        let channels = &mut task.channels[oc0..oc0 + cols];
        S::Out::store_transposed(values, nr, rows, cols, channels, p);
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
            Family::Planar | Family::Direct => unreachable!("planar and direct plans do not tile"),
        }
    }

    /// Packs the im2col rows of output pixels `m0 .. m0 + rows` of group `grp` into the A panel
    /// (`[steps][mr][width]`), through a contiguous row buffer; with `sums`, also each row's
    /// activation sum. Padded taps hold the input zero point (the u8 family) or 0 (the i16
    /// family, whose values have the zero point subtracted). Entries past the reduction length
    /// are left as they are: the weight panels hold zeros there.
    fn pack<T: Copy + Into<i32>>(
        &self,
        x: &[T],
        pad: T,
        (n, grp, m0, rows): (usize, usize, usize, usize),
        row: &mut [T],
        a: &mut [T],
        mut sums: Option<&mut [i32]>,
    ) {
        let g = &self.g;
        let (cg, c_len, mr, k_len) = (g.group_in_channels(), g.in_channels, self.mr, self.k_len);
        let width = row.len() / self.steps;
        let ow_len = g.out_w();
        for m in 0..rows {
            let p = m0 + m;
            let (oh, ow) = (p / ow_len, p % ow_len);
            let mut k = 0;
            for r in 0..g.kernel[0] {
                for s in 0..g.kernel[1] {
                    let dst = &mut row[k..k + cg];
                    match g.tap_position(oh, ow, r, s) {
                        Some((ih, iw)) => {
                            let base = ((n * g.in_h + ih) * g.in_w + iw) * c_len + grp * cg;
                            dst.copy_from_slice(&x[base..base + cg]);
                        }
                        None => dst.fill(pad),
                    }
                    k += cg;
                }
            }
            if let Some(sums) = sums.as_deref_mut() {
                sums[m] = row[..k_len].iter().map(|&v| v.into()).sum();
            }
            for (q, chunk) in row.chunks_exact(width).enumerate() {
                let at = (q * mr + m) * width;
                a[at..at + width].copy_from_slice(chunk);
            }
        }
    }
}

/// The shape of the NHWC copy of the input.
struct InputLayout {
    /// Rows / columns of padding around the image: top, left, bottom, right.
    border: [usize; 4],
    /// Values per group in each pixel (the group's channels, padded).
    segment: usize,
    /// Values after the last pixel, so that runs padded past the end stay inside the buffer.
    slack: usize,
}

impl InputLayout {
    fn padded_size(&self, g: &ConvGeometry) -> (usize, usize) {
        let [t, l, b, r] = self.border;
        (g.in_h + t + b, g.in_w + l + r)
    }
}

/// NCHW `input` in NHWC order, each value mapped by `f`, each group's channels padded to the
/// layout's segment (with `T::default()`), inside a border of `pad` pixels. Transposed in blocks
/// of pixels so that reads and writes stay in cache.
fn to_nhwc<I: Copy + Into<i32>, T: Copy + Default>(
    g: &ConvGeometry,
    input: &[I],
    layout: &InputLayout,
    pad: T,
    f: impl Fn(i32) -> T,
) -> Vec<T> {
    let [n_len, c_len, h, w] = g.input_shape();
    let (plane, cg) = (h * w, g.group_in_channels());
    let (hp, wp) = layout.padded_size(g);
    let [top, left, _, _] = layout.border;
    let cv = layout.segment * g.groups;
    let bordered = layout.border != [0; 4];
    let fill = if bordered { pad } else { T::default() };
    let mut out = vec![fill; n_len * hp * wp * cv + layout.slack];
    if bordered && layout.segment != cg {
        // Channel padding inside the image holds zeros (the weights there are zero anyway).
        for pixel in out[..n_len * hp * wp * cv].chunks_mut(layout.segment) {
            pixel[cg..].fill(T::default());
        }
    }
    let slots: Vec<usize> = (0..c_len).map(|c| (c / cg) * layout.segment + c % cg).collect();
    for n in 0..n_len {
        let src = &input[n * c_len * plane..(n + 1) * c_len * plane];
        for y in 0..h {
            let row = (n * hp + y + top) * wp + left;
            let dst = &mut out[row * cv..(row + w) * cv];
            for (c, &slot) in slots.iter().enumerate() {
                let from = &src[c * plane + y * w..c * plane + (y + 1) * w];
                for (pixel, &v) in dst.chunks_exact_mut(cv).zip(from) {
                    pixel[slot] = f(v.into());
                }
            }
        }
    }
    out
}

/// Per pixel of the NHWC copy (border included) and group, the sum of the (shifted)
/// activations.
fn group_sums(g: &ConvGeometry, x: &[u8], layout: &InputLayout) -> Vec<i32> {
    let cg = g.group_in_channels();
    let (hp, wp) = layout.padded_size(g);
    let pixels = g.batch * hp * wp;
    let mut sums = Vec::with_capacity(pixels * g.groups);
    for p in 0..pixels {
        for grp in 0..g.groups {
            let base = (p * g.groups + grp) * layout.segment;
            sums.push(x[base..base + cg].iter().map(|&v| v as i32).sum());
        }
    }
    sums
}

/// One task of a plan, run inside [`crate::kernels::with_isa`].
struct TaskJob<'a, 'b, S: OutputStage> {
    plan: &'a ConvPlan,
    nhwc: &'a Nhwc,
    layout: &'a InputLayout,
    group_sums: &'a [i32],
    task: &'a mut Task<'b, S::Out>,
    stage: &'a S,
}

impl<S: OutputStage> crate::kernels::VectorTask for TaskJob<'_, '_, S> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        if self.plan.indirect {
            let (nhwc, layout, sums) = (self.nhwc, self.layout, self.group_sums);
            self.plan.run_task_indirect(nhwc, layout, sums, self.task, self.stage)
        } else {
            self.plan.run_task(self.nhwc, self.task, self.stage)
        }
    }
}

/// How the indirect mode splits a row of A into contiguous runs of the NHWC copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RunLayout {
    /// Whole kernel rows (kw pixels of all channels) rather than single taps.
    row_runs: bool,
    /// Runs per row of A.
    count: usize,
    /// Real values per run.
    len: usize,
    /// The run length padded to the kernel width.
    padded: usize,
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

/// The tile of the exact u8 x s8 VNNI kernel (indirect or packed), if `kernel` has one.
fn exact_tile(kernel: KernelIsa, indirect: bool) -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        if indirect {
            crate::kernels::x86::indirect_tile(kernel, true)
        } else {
            crate::kernels::x86::u8s8_tile(kernel)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, indirect);
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
        if !pairs && exact_tile(kernel, false).is_some() {
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

fn dispatch_igemm_u8s8(
    kernel: KernelIsa,
    pairs: bool,
    (mr, nr, taps, quads): (usize, usize, usize, usize),
    a: &[u8],
    offsets: &[usize],
    b: &[i8],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::x86::indirect_tile(kernel, !pairs).is_some() {
            return crate::kernels::x86::igemm_u8s8(kernel, pairs, taps, quads, a, offsets, b, c);
        }
    }
    let _ = kernel;
    scalar::igemm_u8s8(mr, nr, taps, quads, a, offsets, b, c, pairs)
}

fn dispatch_igemm_i16(
    kernel: KernelIsa,
    (mr, nr, taps, pairs): (usize, usize, usize, usize),
    a: &[i16],
    offsets: &[usize],
    b: &[i16],
    c: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if kernel.has_avx2() {
            return crate::kernels::x86::igemm_i16(kernel, taps, pairs, a, offsets, b, c);
        }
    }
    let _ = kernel;
    scalar::igemm_i16(mr, nr, taps, pairs, a, offsets, b, c)
}

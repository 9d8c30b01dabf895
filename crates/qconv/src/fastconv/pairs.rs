//! The indirect GEMM for saturating pairs when a group has an odd number of channels: pairs of
//! the tap-major reduction then straddle taps, which the direct route's per-tap channel slots
//! cannot express. Rows of A (one per output pixel, its im2col row) are read in place from a
//! spatially padded NHWC copy of the input, one pointer per contiguous run (a whole kernel row
//! of `kw * C` values when there is one group and no horizontal dilation, else one tap's
//! channels); when a run has an odd length, pairs would straddle runs too, and rows are packed
//! into a panel instead. Each tile's accumulators are corrected for zero points and handed to the
//! output stage a pixel (row) at a time.

use std::sync::Arc;

use super::output::OutputValue;
use super::{InputValue, OutputStage};
use crate::geometry::ConvGeometry;
use crate::kernels::{self, KernelIsa};
use crate::layer::ConvLayer;

pub(super) struct PairGemmPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    mr: usize,
    nr: usize,
    /// Reduction length per group, and the number of quads it is padded to.
    k_len: usize,
    steps: usize,
    /// Indirect mode (rows read in place) or packed mode (rows copied into a panel).
    indirect: bool,
    runs: RunLayout,
    input_zero_point: i32,
    /// Weight panels: per group, per tile of `nr` output channels, `steps * nr * 4` values.
    b: Vec<i8>,
    panel_len: usize,
    n_tiles: usize,
    /// Per output channel: the constant part of the zero-point correction, and the weight zero
    /// point that multiplies each row's activation sum.
    column_correction: Vec<i32>,
    weight_zero_points: Vec<i32>,
    needs_row_sums: bool,
}

impl PairGemmPlan {
    /// The plan for u8 x s8 `layer` (the caller checks the types).
    pub(super) fn new(layer: &ConvLayer, kernel: KernelIsa) -> PairGemmPlan {
        let g = layer.geometry;
        let k_len = g.reduction_len();
        let cg = g.group_in_channels();
        let zero_points: Vec<i32> = (0..g.out_channels)
            .map(|oc| layer.weight.quant.zero_point(oc))
            .collect();
        // Pairs must not straddle runs, so a run must hold an even number of values.
        let row_runs = g.groups == 1 && g.dilation[1] == 1;
        let run_len = if row_runs { g.kernel[1] * cg } else { cg };
        let indirect = run_len % 2 == 0;
        let (mr, nr) = kernels::pairs_tile(kernel);
        let runs = RunLayout {
            row_runs,
            count: if row_runs {
                g.kernel[0]
            } else {
                g.kernel[0] * g.kernel[1]
            },
            len: run_len,
            padded: run_len.div_ceil(4) * 4,
        };
        let steps = if indirect {
            runs.count * runs.padded / 4
        } else {
            k_len.div_ceil(4)
        };
        let ocg = g.group_out_channels();
        let n_tiles = ocg.div_ceil(nr);
        let panel_len = steps * nr * 4;
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
        let mut b = Vec::with_capacity(g.groups * n_tiles * panel_len);
        for grp in 0..g.groups {
            for t in 0..n_tiles {
                for s in 0..steps {
                    for n in 0..nr {
                        let local = t * nr + n;
                        for i in 0..4 {
                            let value = match reduction_index(s * 4 + i) {
                                Some(k) if local < ocg => weight_at(grp * ocg + local, k),
                                _ => 0,
                            };
                            b.push(value as i8);
                        }
                    }
                }
            }
        }
        let az = layer.input.zero_point;
        let column_correction = (0..g.out_channels)
            .map(|oc| {
                let sum = (0..k_len).fold(0i32, |s, k| s.wrapping_add(weight_at(oc, k)));
                (k_len as i32)
                    .wrapping_mul(az)
                    .wrapping_mul(zero_points[oc])
                    .wrapping_sub(az.wrapping_mul(sum))
            })
            .collect();
        let needs_row_sums = zero_points.iter().any(|&z| z != 0);
        PairGemmPlan {
            g,
            kernel,
            mr,
            nr,
            k_len,
            steps,
            indirect,
            runs,
            input_zero_point: az,
            b,
            panel_len,
            n_tiles,
            column_correction,
            weight_zero_points: zero_points,
            needs_row_sums,
        }
    }

    /// Runs the layer on NCHW `input` into NCHW `out`, in parallel over output pixels.
    pub(super) fn run<I, S>(
        &self,
        pool: Option<&Arc<rayon::ThreadPool>>,
        input: &[I],
        out: &mut [S::Out],
        stage: &S,
    ) where
        I: InputValue,
        S: OutputStage,
    {
        let g = &self.g;
        let [n_len, oc_len, oh, ow] = g.output_shape();
        let plane = oh * ow;
        let threads = pool.map_or(1, |p| p.current_num_threads());
        let tile = self.mr;
        let chunk = if threads == 1 {
            plane
        } else {
            (plane.div_ceil(threads * 4)).div_ceil(tile).max(1) * tile
        };
        let layout = self.input_layout();
        let pad = self.input_zero_point as u8;
        let nhwc = to_nhwc(g, input, &layout, pad, |v| v as u8);
        let group_sums = if self.needs_row_sums {
            group_sums(g, &nhwc, &layout)
        } else {
            Vec::new()
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
        super::for_each_task(pool.map(|p| &**p), &mut tasks, work);
    }

    /// Packed mode: each tile's im2col rows are copied into an A panel.
    #[inline(always)]
    fn run_task<S: OutputStage>(&self, nhwc: &[u8], task: &mut Task<S::Out>, stage: &S) {
        let g = &self.g;
        let (mr, nr) = (self.mr, self.nr);
        let ocg = g.group_out_channels();
        let mut a = vec![0u8; self.steps * mr * 4];
        let mut row = vec![0u8; self.steps * 4];
        let mut row_sums = vec![0i32; mr];
        let mut c = vec![0i32; mr * nr];
        let mut values = vec![S::Out::default(); mr * nr];
        let pad = self.input_zero_point as u8;
        for grp in 0..g.groups {
            let mut m0 = task.p0;
            while m0 < task.p1 {
                let rows = mr.min(task.p1 - m0);
                self.pack(
                    nhwc,
                    pad,
                    (task.n, grp, m0, rows),
                    &mut row,
                    &mut a,
                    &mut row_sums,
                );
                for t in 0..self.n_tiles {
                    let start = (grp * self.n_tiles + t) * self.panel_len;
                    let b = &self.b[start..start + self.panel_len];
                    kernels::gemm_u8s8_pairs(self.kernel, (mr, nr, self.steps), &a, b, &mut c);
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
            segment: if self.runs.row_runs {
                cg
            } else {
                self.runs.padded
            },
            slack: self.runs.padded,
        }
    }

    /// Indirect mode: A rows are read in place through per-run offsets into the padded NHWC copy.
    #[inline(always)]
    fn run_task_indirect<S: OutputStage>(
        &self,
        nhwc: &[u8],
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
        let per_run = runs.padded / 4;
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
                    let b = &self.b[start..start + self.panel_len];
                    let shape = (mr, nr, runs.count, per_run);
                    kernels::igemm_u8s8_pairs(self.kernel, shape, nhwc, &offsets, b, &mut c);
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
            let cc = &self.column_correction[oc0..oc0 + cols];
            let wz = &self.weight_zero_points[oc0..oc0 + cols];
            let rs = row_sums[m];
            for ((a, &cc), &wz) in accs.iter_mut().zip(cc).zip(wz) {
                *a = a.wrapping_add(cc).wrapping_sub(wz.wrapping_mul(rs));
            }
            stage.row(accs, oc0, &mut values[m * nr..m * nr + cols]);
        }
        let p = m0 - task.p0;
        let channels = &mut task.channels[oc0..oc0 + cols];
        S::Out::store_transposed(values, nr, rows, cols, channels, p);
    }

    /// Packs the im2col rows of output pixels `m0 .. m0 + rows` of group `grp` into the A panel
    /// (`[steps][mr][4]`), through a contiguous row buffer, and each row's activation sum.
    /// Padded taps hold the input zero point. Entries past the reduction length are left as they
    /// are: the weight panels hold zeros there.
    fn pack(
        &self,
        x: &[u8],
        pad: u8,
        (n, grp, m0, rows): (usize, usize, usize, usize),
        row: &mut [u8],
        a: &mut [u8],
        sums: &mut [i32],
    ) {
        let g = &self.g;
        let (cg, c_len, mr, k_len) = (g.group_in_channels(), g.in_channels, self.mr, self.k_len);
        let width = row.len() / self.steps;
        let ow_len = g.out_w();
        for (m, sum) in sums.iter_mut().enumerate().take(rows) {
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
            *sum = row[..k_len].iter().map(|&v| v as i32).sum();
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
    let slots: Vec<usize> = (0..c_len)
        .map(|c| (c / cg) * layout.segment + c % cg)
        .collect();
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
    plan: &'a PairGemmPlan,
    nhwc: &'a [u8],
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
            self.plan
                .run_task_indirect(nhwc, layout, sums, self.task, self.stage)
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

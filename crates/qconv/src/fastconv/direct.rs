//! The direct route: a GEMM whose rows are output channels and whose columns are output pixels,
//! reading activations in place from a channel-interleaved copy of the input.
//!
//! The copy holds, per group and per *slot* of `width` consecutive channels (4 for the u8
//! kernels, 2 for the i16 one; the last slot padded with zero-weight channels), each padded
//! input plane split into stride phases exactly as the planar route does (see `planar.rs`): pixel
//! `(y, x)` of the padded plane lives in phase `(y % sh, x % sw)` at `(y / sh, x / sw)` of a
//! `hq x wq` sub-plane, and the slot's channels are interleaved per pixel. Output pixel `(oh, ow)`
//! is grid position `p = oh * wq + ow`, and tap `t` reads sub-plane position `p + offset[t]` for
//! every pixel, so one reduction step (one tap of one slot) is one contiguous run of `width *
//! pixels` values: the kernels load it directly, with no im2col and no packing. Grid columns
//! `ow >= out_w` are computed and dropped.
//!
//! Reduction steps run tap-major (tap, then slot), so the k-th product is the same one as in the
//! tap-major reference order; the saturating-pair kernel pairs channels `(2i, 2i + 1)` of a tap,
//! which is FBGEMM's and ONNX Runtime's pair order when a group has an even number of channels
//! (odd counts pair across taps and take the other routes).
//!
//! The u8 kernels see raw (shifted) values and correct for zero points afterwards:
//! `sum (x - xz)(w - wz) = sum x w - wz * sum x - xz * sum w + K xz wz`, with padding holding
//! `xz` so that it contributes nothing. The i16 kernel sees values with zero points subtracted.
//! Each accumulator row is a run of one output channel's plane: the output stage requantizes it
//! as a run and it is stored straight into NCHW.

use super::{InputValue, OutputStage, Reduction};
use crate::dtype::DType;
use crate::geometry::ConvGeometry;
use crate::kernels::{self, DirectKind, KernelIsa};
use crate::layer::ConvLayer;

/// Output pixels per block of tiles (see `DirectJob::run`).
const BLOCK_PIXELS: usize = 1024;

pub(super) struct DirectPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    kind: DirectKind,
    width: usize,
    mr: usize,
    tw: usize,
    /// Channel slots per group.
    slots: usize,
    /// Sub-plane size `(hq, wq)` and the number of stride phases.
    sub: (usize, usize),
    phases: usize,
    /// Pixels per slot plane in the copy, slack for the last tile included.
    plane_len: usize,
    /// Per tap, its pixel offset.
    tap_offsets: Vec<usize>,
    /// Per reduction step (tap-major), where its run starts for grid pixel 0, in values.
    steps: kernels::DirectSteps,
    /// Output-channel tiles per group.
    oc_tiles: usize,
    /// Weight panels `[group][oc tile][step][mr][width]`.
    w_u8s8: Vec<i8>,
    w_i16: Vec<i16>,
    /// Added to int8 activations to store them as u8 (u8 kinds).
    activation_offset: i32,
    /// The value padding holds in the copy.
    pad_value: i32,
    input_zero_point: i32,
    /// u8 kinds: per output channel, `K xz wz - xz sum w` and `wz` (both as stored).
    column_correction: Vec<i32>,
    weight_zero_points: Vec<i32>,
    needs_sums: bool,
}

impl DirectPlan {
    /// The plan, or `None` when the direct kernels cannot compute `reduction` for this layer
    /// (saturating pairs with an odd number of channels per group).
    pub(super) fn new(
        layer: &ConvLayer,
        reduction: Reduction,
        kernel: KernelIsa,
    ) -> Option<DirectPlan> {
        let g = layer.geometry;
        let cg = g.group_in_channels();
        let kind = match reduction {
            Reduction::PairSaturating if cg % 2 == 1 => return None,
            Reduction::PairSaturating => DirectKind::U8S8Pairs,
            Reduction::Exact if kernel.is_avx512_vnni() || kernel.is_avx_vnni() => DirectKind::U8S8,
            Reduction::Exact if kernel.has_avx2() => DirectKind::I16,
            Reduction::Exact => DirectKind::U8S8,
        };
        let width = kind.width();
        let (mr, tw) = kernels::direct_tile(kernel, kind);
        let slots = cg.div_ceil(width);
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let p = g.padding;
        let (hp, wp) = (g.in_h + p.top + p.bottom, g.in_w + p.left + p.right);
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let (phases, sub_len) = (sh * sw, hq * wq);
        let taps = g.kernel[0] * g.kernel[1];
        let mut tap_offsets = Vec::with_capacity(taps);
        for r in 0..g.kernel[0] {
            for s in 0..g.kernel[1] {
                let (y, x) = (r * dh, s * dw);
                let phase = (y % sh) * sw + x % sw;
                tap_offsets.push(phase * sub_len + (y / sh) * wq + x / sw);
            }
        }
        let grid_tiles = (g.out_h() * wq).div_ceil(tw);
        let max_offset = tap_offsets.iter().copied().max().unwrap_or(0);
        let plane_len = (phases * sub_len).max(max_offset + grid_tiles * tw);
        let steps: Vec<usize> = tap_offsets
            .iter()
            .flat_map(|&off| (0..slots).map(move |q| (q * plane_len + off) * width))
            .collect();

        let (x, w) = (layer.input.dtype, layer.weight.dtype);
        let (activation_offset, weight_offset) = match kind {
            DirectKind::U8S8 => (
                if x == DType::Int8 { 128 } else { 0 },
                if w == DType::Uint8 { -128 } else { 0 },
            ),
            _ => (0, 0),
        };
        let ocg = g.group_out_channels();
        let oc_tiles = ocg.div_ceil(mr);
        let zero_points: Vec<i32> = (0..g.out_channels)
            .map(|oc| layer.weight.quant.zero_point(oc))
            .collect();
        let weight_at = |oc: usize, c: usize, t: usize| {
            let (r, s) = (t / g.kernel[1], t % g.kernel[1]);
            layer.weight.data[g.weight_index(oc, c, r, s)]
        };
        let mut w_u8s8 = Vec::new();
        let mut w_i16 = Vec::new();
        for grp in 0..g.groups {
            for u in 0..oc_tiles {
                for t in 0..taps {
                    for q in 0..slots {
                        for m in 0..mr {
                            let local = u * mr + m;
                            for i in 0..width {
                                let c = q * width + i;
                                let value = if local < ocg && c < cg {
                                    let oc = grp * ocg + local;
                                    match kind {
                                        DirectKind::I16 => weight_at(oc, c, t) - zero_points[oc],
                                        _ => weight_at(oc, c, t) + weight_offset,
                                    }
                                } else {
                                    0
                                };
                                match kind {
                                    DirectKind::I16 => w_i16.push(value as i16),
                                    _ => w_u8s8.push(value as i8),
                                }
                            }
                        }
                    }
                }
            }
        }
        let (pad_value, column_correction, weight_zero_points, needs_sums) = match kind {
            DirectKind::I16 => (0, Vec::new(), Vec::new(), false),
            _ => {
                let xz = layer.input.zero_point + activation_offset;
                let k_len = (cg * taps) as i32;
                let wz: Vec<i32> = zero_points.iter().map(|&z| z + weight_offset).collect();
                let correction = (0..g.out_channels)
                    .map(|oc| {
                        let sum = (0..cg)
                            .flat_map(|c| (0..taps).map(move |t| (c, t)))
                            .fold(0i32, |s, (c, t)| {
                                s.wrapping_add(weight_at(oc, c, t) + weight_offset)
                            });
                        k_len
                            .wrapping_mul(xz)
                            .wrapping_mul(wz[oc])
                            .wrapping_sub(xz.wrapping_mul(sum))
                    })
                    .collect();
                let needs = wz.iter().any(|&z| z != 0);
                (xz, correction, wz, needs)
            }
        };
        Some(DirectPlan {
            g,
            kernel,
            kind,
            width,
            mr,
            tw,
            slots,
            sub: (hq, wq),
            phases,
            plane_len,
            tap_offsets,
            steps: kernels::DirectSteps::new(steps),
            oc_tiles,
            w_u8s8,
            w_i16,
            activation_offset,
            pad_value,
            input_zero_point: layer.input.zero_point,
            column_correction,
            weight_zero_points,
            needs_sums,
        })
    }

    pub(super) fn route(&self) -> &'static str {
        match self.kind {
            DirectKind::U8S8 => "direct u8 x s8, exact int32",
            DirectKind::U8S8Pairs => "direct u8 x s8 pairs in saturating int16",
            DirectKind::I16 => "direct i16 x i16, exact int32",
        }
    }

    /// Runs the layer on NCHW `input` into NCHW `out`, one batch item at a time: the
    /// interleaved copy, then tasks of pixel tiles and output-channel tiles in parallel.
    pub(super) fn run<I, S>(
        &self,
        pool: Option<&rayon::ThreadPool>,
        input: &[I],
        out: &mut [S::Out],
        stage: &S,
    ) where
        I: InputValue,
        S: OutputStage,
    {
        let g = &self.g;
        let in_item = g.in_channels * g.in_h * g.in_w;
        let out_item = g.out_channels * g.out_h() * g.out_w();
        if out_item == 0 {
            return;
        }
        let threads = pool.map_or(1, |p| p.current_num_threads());
        for (n, out) in out.chunks_exact_mut(out_item).enumerate() {
            let src = &input[n * in_item..(n + 1) * in_item];
            match self.kind {
                DirectKind::I16 => {
                    let zp = self.input_zero_point;
                    let copy: Vec<i16> = self.interleaved_copy(pool, src, -zp);
                    self.run_item(pool, threads, Copy16(&copy), &[], out, stage);
                }
                _ => {
                    let off = self.activation_offset;
                    let copy: Vec<u8> = self.interleaved_copy(pool, src, off);
                    let sums = if self.needs_sums {
                        self.pixel_sums(&copy)
                    } else {
                        Vec::new()
                    };
                    self.run_item(pool, threads, Copy8(&copy), &sums, out, stage);
                }
            }
        }
    }

    /// The channel-interleaved, phase-split, padded copy of one batch item.
    fn interleaved_copy<I, T>(
        &self,
        pool: Option<&rayon::ThreadPool>,
        src: &[I],
        shift: i32,
    ) -> Vec<T>
    where
        I: InputValue,
        T: Interleaved,
    {
        let g = &self.g;
        // Stored values are the input plus `shift`, in T (in range for the layer's input type).
        let f = |v: i32| T::stored(v + shift);
        let pad = T::try_from(self.pad_value).unwrap_or_default();
        let segment = self.plane_len * self.width;
        let mut copy = vec![pad; g.groups * self.slots * segment];
        let fill = |(slot, dst): (usize, &mut [T]), planes: &mut Vec<T>| {
            let (grp, q) = (slot / self.slots, slot % self.slots);
            let cg = g.group_in_channels();
            let plane = self.phases * self.sub.0 * self.sub.1;
            if g.stride[1] == 1 {
                // Each input row lands contiguously in the copy: interleave straight from the
                // source rows. Slots past the group's channels repeat its last channel (their
                // weights are zero, and the pixel sums skip them).
                let channel = |i: usize| grp * cg + (q * self.width + i).min(cg - 1);
                let plane_of = |c: usize| &src[c * g.in_h * g.in_w..(c + 1) * g.in_h * g.in_w];
                match self.width {
                    4 => self.interleave_rows(
                        [0, 1, 2, 3].map(|i| plane_of(channel(i))),
                        dst,
                        shift,
                        planes,
                    ),
                    _ => self.interleave_rows(
                        [0, 1].map(|i| plane_of(channel(i))),
                        dst,
                        shift,
                        planes,
                    ),
                }
                return;
            }
            planes.clear();
            planes.resize(self.width * plane, pad);
            for i in 0..self.width {
                let c = q * self.width + i;
                let dst = &mut planes[i * plane..(i + 1) * plane];
                if c < cg {
                    let channel = grp * cg + c;
                    let from = &src[channel * g.in_h * g.in_w..(channel + 1) * g.in_h * g.in_w];
                    self.phase_split(from, dst, &f);
                } else {
                    dst.fill(T::default());
                }
            }
            let rows: Vec<&[T]> = planes.chunks_exact(plane).collect();
            crate::kernels::with_isa(
                self.kernel,
                Interleave {
                    rows: &rows,
                    out: &mut dst[..self.width * plane],
                    isa: self.kernel,
                },
            );
        };
        match pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                copy.par_chunks_mut(segment)
                    .enumerate()
                    .for_each_init(Vec::new, |planes, item| fill(item, planes));
            }),
            None => {
                let mut planes = Vec::new();
                for item in copy.chunks_mut(segment).enumerate() {
                    fill(item, &mut planes);
                }
            }
        }
        copy
    }

    /// Writes `W` channel planes interleaved into a slot's copy, each value plus `shift` (`dst`
    /// already holds the padding); for horizontal stride 1, where every input row is one
    /// contiguous run. `scratch` is working memory.
    fn interleave_rows<I: InputValue, T: Interleaved, const W: usize>(
        &self,
        planes: [&[I]; W],
        dst: &mut [T],
        shift: i32,
        scratch: &mut Vec<T>,
    ) {
        let g = &self.g;
        let sh = g.stride[0];
        let (hq, wq) = self.sub;
        let (top, left, w) = (g.padding.top, g.padding.left, g.in_w);
        let bytes = planes.map(I::as_u8);
        for iy in 0..g.in_h {
            let y = iy + top;
            let start = ((y % sh) * hq * wq + (y / sh) * wq + left) * W;
            let out = &mut dst[start..start + w * W];
            if bytes.iter().all(Option::is_some) {
                let rows = bytes.map(|b| &b.expect("checked")[iy * w..(iy + 1) * w]);
                T::interleave_u8(self.kernel, &rows, shift, scratch, out);
                continue;
            }
            let rows = planes.map(|p| &p[iy * w..(iy + 1) * w]);
            for (j, out) in out.chunks_exact_mut(W).enumerate() {
                for (o, row) in out.iter_mut().zip(&rows) {
                    *o = T::stored(row[j].into() + shift);
                }
            }
        }
    }

    /// A tile's operands: group `grp`'s copy from grid pixel `p0` on, and weight panel `panel`
    /// (both `width` values per pixel or per weight slot).
    fn operands<'c, A, W>(
        &self,
        copy: &'c [A],
        weights: &'c [W],
        grp: usize,
        p0: usize,
        panel: usize,
    ) -> (&'c [A], &'c [W]) {
        let segment = self.slots * self.plane_len * self.width;
        let len = self.steps.len() * self.mr * self.width;
        (
            &copy[grp * segment + p0 * self.width..(grp + 1) * segment],
            &weights[panel * len..(panel + 1) * len],
        )
    }

    /// Writes one channel plane into its stride phases (`dst` already holds the padding).
    fn phase_split<I: Copy + Into<i32>, T: Copy>(
        &self,
        src: &[I],
        dst: &mut [T],
        f: &impl Fn(i32) -> T,
    ) {
        let g = &self.g;
        let [sh, sw] = g.stride;
        let (hq, wq) = self.sub;
        let (top, left) = (g.padding.top, g.padding.left);
        for (iy, row) in src.chunks_exact(g.in_w).enumerate() {
            let y = iy + top;
            let row_start = |px: usize| ((y % sh) * sw + px) * hq * wq + (y / sh) * wq;
            super::split_row(row, left, sw, row_start, dst, &|v: I| f(v.into()));
        }
    }

    /// Per group and grid pixel, the sum of the stored activations its taps read over the
    /// group's real channels: `[group][grid pixel]`, grid padded to whole tiles.
    fn pixel_sums(&self, copy: &[u8]) -> Vec<i32> {
        let g = &self.g;
        let cg = g.group_in_channels();
        let grid = (g.out_h() * self.sub.1).div_ceil(self.tw) * self.tw;
        let mut sums = Vec::with_capacity(g.groups * grid);
        let mut plane = vec![0i32; self.plane_len];
        for grp in 0..g.groups {
            plane.fill(0);
            for q in 0..self.slots {
                let seg =
                    &copy[(grp * self.slots + q) * self.plane_len * 4..][..self.plane_len * 4];
                let lanes = (cg - q * 4).min(4);
                for (s, pixel) in plane.iter_mut().zip(seg.chunks_exact(4)) {
                    *s += pixel[..lanes].iter().map(|&v| v as i32).sum::<i32>();
                }
            }
            for p in 0..grid {
                sums.push(self.tap_offsets.iter().map(|&o| plane[p + o]).sum());
            }
        }
        sums
    }

    /// Splits the output of one batch item into tasks and runs them.
    fn run_item<S: OutputStage>(
        &self,
        pool: Option<&rayon::ThreadPool>,
        threads: usize,
        copy: impl CopyRef,
        sums: &[i32],
        out: &mut [S::Out],
        stage: &S,
    ) {
        let g = &self.g;
        let (ow_len, wq) = (g.out_w(), self.sub.1);
        let grid_len = g.out_h() * wq;
        let grid_tiles = grid_len.div_ceil(self.tw);
        // Enough tasks to balance the threads: pixel tiles first, then output-channel tiles.
        let wanted = if threads > 1 { threads * 4 } else { 1 };
        let pixel_chunks = grid_tiles.min(wanted).max(1);
        let tiles_per_chunk = grid_tiles.div_ceil(pixel_chunks);
        let pixel_chunks = grid_tiles.div_ceil(tiles_per_chunk);
        let oc_chunks = wanted
            .div_ceil(pixel_chunks * g.groups)
            .clamp(1, self.oc_tiles);
        let octiles_per_chunk = self.oc_tiles.div_ceil(oc_chunks);
        let oc_chunks = self.oc_tiles.div_ceil(octiles_per_chunk);
        // Output index of grid position `p`: the valid pixels before it.
        let to_out = |p: usize| (p / wq) * ow_len + (p % wq).min(ow_len);
        let bounds: Vec<usize> = (0..=pixel_chunks)
            .map(|j| to_out((j * tiles_per_chunk * self.tw).min(grid_len)))
            .collect();
        let mut tasks: Vec<DirectTask<S::Out>> = Vec::new();
        for (j, &out_start) in bounds[..pixel_chunks].iter().enumerate() {
            for grp in 0..g.groups {
                for u in 0..oc_chunks {
                    tasks.push(DirectTask {
                        grp,
                        tiles: (
                            j * tiles_per_chunk,
                            ((j + 1) * tiles_per_chunk).min(grid_tiles),
                        ),
                        oc_tiles: (
                            u * octiles_per_chunk,
                            ((u + 1) * octiles_per_chunk).min(self.oc_tiles),
                        ),
                        out_start,
                        channels: Vec::new(),
                    });
                }
            }
        }
        let plane = g.out_h() * ow_len;
        let ocg = g.group_out_channels();
        for (oc, channel) in out.chunks_exact_mut(plane).enumerate() {
            let (grp, local) = (oc / ocg, oc % ocg);
            let u = local / self.mr / octiles_per_chunk;
            let mut rest = channel;
            for j in 0..pixel_chunks {
                let (piece, tail) = rest.split_at_mut(bounds[j + 1] - bounds[j]);
                rest = tail;
                tasks[(j * g.groups + grp) * oc_chunks + u]
                    .channels
                    .push(piece);
            }
        }
        let work = |task: &mut DirectTask<S::Out>| {
            let job = DirectJob {
                plan: self,
                copy,
                sums,
                task,
                stage,
            };
            crate::kernels::with_isa(self.kernel, job);
        };
        super::for_each_task(pool, &mut tasks, work);
    }
}

/// The interleaved copy, by element type.
trait CopyRef: Copy + Send + Sync {
    /// The tile product at grid pixel `p0` of group `grp` with weight tile `panel`, of which
    /// the first `pixels` columns are needed.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        plan: &DirectPlan,
        grp: usize,
        p0: usize,
        pixels: usize,
        panel: usize,
        acc: &mut [i32],
        ldc: usize,
    );
}

#[derive(Clone, Copy)]
struct Copy8<'a>(&'a [u8]);

#[derive(Clone, Copy)]
struct Copy16<'a>(&'a [i16]);

impl CopyRef for Copy8<'_> {
    #[inline(always)]
    fn product(
        &self,
        plan: &DirectPlan,
        grp: usize,
        p0: usize,
        pixels: usize,
        panel: usize,
        acc: &mut [i32],
        ldc: usize,
    ) {
        let (b, w) = plan.operands(self.0, &plan.w_u8s8, grp, p0, panel);
        let pairs = plan.kind == DirectKind::U8S8Pairs;
        kernels::direct_u8s8(plan.kernel, pairs, pixels, &plan.steps, b, w, acc, ldc);
    }
}

impl CopyRef for Copy16<'_> {
    #[inline(always)]
    fn product(
        &self,
        plan: &DirectPlan,
        grp: usize,
        p0: usize,
        _pixels: usize,
        panel: usize,
        acc: &mut [i32],
        ldc: usize,
    ) {
        let (b, w) = plan.operands(self.0, &plan.w_i16, grp, p0, panel);
        kernels::direct_i16(plan.kernel, &plan.steps, b, w, acc, ldc);
    }
}

/// Interleaves a slot's planes inside [`crate::kernels::with_isa`].
struct Interleave<'a, T> {
    rows: &'a [&'a [T]],
    out: &'a mut [T],
    isa: KernelIsa,
}

impl<T: Interleaved> crate::kernels::VectorTask for Interleave<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        T::interleave(self.isa, self.rows, self.out)
    }
}

/// Element types of the interleaved copy.
trait Interleaved: Copy + Send + Sync + Default + TryFrom<i32> {
    /// `out[W j + i] = rows[i][j]` for the type's slot width `W`.
    fn interleave(isa: KernelIsa, rows: &[&[Self]], out: &mut [Self]);
    /// An input value plus its shift as stored (in range by construction; truncates).
    fn stored(v: i32) -> Self;
    /// `out[W j + i] = stored(rows[i][j] + shift)` from byte rows; `scratch` is working memory.
    fn interleave_u8(
        isa: KernelIsa,
        rows: &[&[u8]],
        shift: i32,
        scratch: &mut Vec<Self>,
        out: &mut [Self],
    );
}

impl Interleaved for u8 {
    #[inline(always)]
    fn interleave(isa: KernelIsa, rows: &[&[u8]], out: &mut [u8]) {
        kernels::interleave_u8x4(isa, [rows[0], rows[1], rows[2], rows[3]], out)
    }

    #[inline(always)]
    fn stored(v: i32) -> u8 {
        v as u8
    }

    fn interleave_u8(
        isa: KernelIsa,
        rows: &[&[u8]],
        shift: i32,
        _scratch: &mut Vec<u8>,
        out: &mut [u8],
    ) {
        kernels::interleave_u8x4(isa, [rows[0], rows[1], rows[2], rows[3]], out);
        if shift != 0 {
            // Wrapping byte addition: int8 inputs stored as u8 (+128).
            let shift = shift as u8;
            out.iter_mut().for_each(|v| *v = v.wrapping_add(shift));
        }
    }
}

impl Interleaved for i16 {
    #[inline(always)]
    fn interleave(isa: KernelIsa, rows: &[&[i16]], out: &mut [i16]) {
        kernels::interleave_i16x2(isa, [rows[0], rows[1]], out)
    }

    #[inline(always)]
    fn stored(v: i32) -> i16 {
        v as i16
    }

    fn interleave_u8(
        isa: KernelIsa,
        rows: &[&[u8]],
        shift: i32,
        scratch: &mut Vec<i16>,
        out: &mut [i16],
    ) {
        let w = rows[0].len();
        scratch.clear();
        for row in &rows[..2] {
            scratch.extend(row.iter().map(|&v| (v as i32 + shift) as i16));
        }
        let (a, b) = scratch.split_at(w);
        kernels::interleave_i16x2(isa, [a, b], out)
    }
}

/// One task: pixel tiles `tiles` and output-channel tiles `oc_tiles` of group `grp`, with the
/// output pieces of those channels (starting at output index `out_start`).
struct DirectTask<'a, T> {
    grp: usize,
    tiles: (usize, usize),
    oc_tiles: (usize, usize),
    out_start: usize,
    channels: Vec<&'a mut [T]>,
}

struct DirectJob<'a, 'b, C, S: OutputStage> {
    plan: &'a DirectPlan,
    copy: C,
    sums: &'a [i32],
    task: &'a mut DirectTask<'b, S::Out>,
    stage: &'a S,
}

impl<C: CopyRef, S: OutputStage> crate::kernels::VectorTask for DirectJob<'_, '_, C, S> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let plan = self.plan;
        let g = &plan.g;
        let (mr, tw) = (plan.mr, plan.tw);
        let (ow_len, wq) = (g.out_w(), plan.sub.1);
        let grid_len = g.out_h() * wq;
        let grid = grid_len.div_ceil(tw) * tw;
        let ocg = g.group_out_channels();
        let task = self.task;
        let grp = task.grp;
        // Blocks of pixel tiles: each output-channel tile fills a block of accumulator rows,
        // then every row is requantized as one run (long runs keep the output stage's vectors
        // busy); the block's activations stay in cache across the channel tiles.
        let block_tiles = (BLOCK_PIXELS / tw).max(1);
        let block = block_tiles * tw;
        let mut acc = vec![0i32; mr * block];
        let mut staged = vec![S::Out::default(); if wq == ow_len { 0 } else { block }];
        let u8_kind = plan.kind != DirectKind::I16;
        let mut b0 = task.tiles.0;
        while b0 < task.tiles.1 {
            let b1 = (b0 + block_tiles).min(task.tiles.1);
            let p_start = b0 * tw;
            let len = (b1 * tw).min(grid_len) - p_start;
            for u in task.oc_tiles.0..task.oc_tiles.1 {
                for tile in b0..b1 {
                    let at = (tile - b0) * tw;
                    let panel = grp * plan.oc_tiles + u;
                    let pixels = tw.min(grid_len.saturating_sub(tile * tw));
                    self.copy
                        .product(plan, grp, tile * tw, pixels, panel, &mut acc[at..], block);
                }
                for m in 0..mr {
                    let local = u * mr + m;
                    if local >= ocg {
                        break;
                    }
                    let oc = grp * ocg + local;
                    let row = &mut acc[m * block..m * block + len];
                    // The zero-point correction: a constant per channel (handed to the output
                    // stage), minus the weight zero point times each pixel's activation sum.
                    let mut acc_offset = 0;
                    if u8_kind {
                        acc_offset = plan.column_correction[oc];
                        if plan.needs_sums {
                            let wz = plan.weight_zero_points[oc];
                            let sums = &self.sums[grp * grid + p_start..grp * grid + p_start + len];
                            for (a, &s) in row.iter_mut().zip(sums) {
                                *a = a.wrapping_sub(wz.wrapping_mul(s));
                            }
                        }
                    }
                    let piece = &mut task.channels[local - task.oc_tiles.0 * mr];
                    if wq == ow_len {
                        // The grid is the output plane.
                        let at = p_start - task.out_start;
                        self.stage.run_i32(
                            plan.kernel,
                            row,
                            acc_offset,
                            oc,
                            &mut piece[at..at + len],
                        );
                        continue;
                    }
                    // Requantize the grid run, then copy each row's valid columns.
                    let staged = &mut staged[..len];
                    self.stage.run_i32(plan.kernel, row, acc_offset, oc, staged);
                    let mut p = p_start;
                    while p < p_start + len {
                        let (oh, ow) = (p / wq, p % wq);
                        let end = ((oh + 1) * wq).min(p_start + len);
                        if ow < ow_len {
                            let n = (end - p).min(ow_len - ow);
                            let at = oh * ow_len + ow - task.out_start;
                            piece[at..at + n]
                                .copy_from_slice(&staged[p - p_start..p - p_start + n]);
                        }
                        p = end;
                    }
                }
            }
            b0 = b1;
        }
    }
}

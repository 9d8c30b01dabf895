//! The planar route, for layers with one input channel per group: depthwise convolutions (with
//! or without a channel multiplier) and single-channel inputs. Each input channel plane is
//! copied once into float32 with its zero point subtracted, zero-padded and split into stride
//! phases, so that every tap of every output row becomes one contiguous, equally shifted read:
//! output `j` of the flattened plane is `sum_t w[t] * plane[offsets[t] + j]`. The planar kernel
//! sums those shifted planes with fused multiply-adds along the pixels, and each output channel
//! plane is requantized as a run and written straight into NCHW.
//!
//! Float32 holds every integer below 2^24 exactly, so the sums are exact when
//! `taps * max|x - x_zp| * max|w - w_zp| < 2^24` ([`PlanarPlan::new`] checks it; 9 taps of full
//! 8-bit ranges need 2^19.2). Layers past the bound take the GEMM route.
//!
//! The phase split: with strides `(sh, sw)` the padded plane (`hp x wp`) becomes `sh * sw`
//! sub-planes of `hq x wq` (`hq = ceil(hp / sh)`, `wq = ceil(wp / sw)`); padded pixel `(y, x)`
//! lives in phase `(y % sh, x % sw)` at `(y / sh, x / sw)`. Tap `(r, s)` of output `(oh, ow)`
//! reads padded pixel `(oh * sh + r * dh, ow * sw + s * dw)`, which is sub-plane position
//! `(oh + r * dh / sh, ow + s * dw / sw)`: a fixed shift of the output's own position `(oh, ow)`
//! in a `wq`-wide grid. Columns `ow >= out_w` of that grid are computed and dropped.

use super::OutputStage;
use crate::geometry::ConvGeometry;
use crate::kernels::{KernelIsa, PLANAR_BLOCK};
use crate::layer::ConvLayer;

/// Largest sum the float32 accumulation holds exactly.
const EXACT_LIMIT: i64 = 1 << 24;

pub(super) struct PlanarPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    /// Output channels per input channel.
    multiplier: usize,
    taps: usize,
    /// `w - w_zp` per output channel and tap, `[oc][tap]`.
    weights: Vec<f32>,
    /// Per tap, where its shifted plane starts in the channel buffer.
    offsets: Vec<usize>,
    input_zero_point: i32,
    /// Sub-plane size `(hq, wq)`.
    sub: (usize, usize),
    /// Values in the channel buffer: every sub-plane plus the slack the last block may read.
    buffer_len: usize,
    /// Outputs per channel in the `wq`-wide grid, rounded up to whole kernel blocks.
    grid_len: usize,
}

impl PlanarPlan {
    /// The plan for `layer`, or `None` when the layer has more than one input channel per
    /// group or its sums could exceed float32's exact integers.
    pub(super) fn new(layer: &ConvLayer, kernel: KernelIsa) -> Option<PlanarPlan> {
        let g = layer.geometry;
        if g.group_in_channels() != 1 {
            return None;
        }
        let taps = g.kernel[0] * g.kernel[1];
        let max_w = (0..g.out_channels)
            .map(|oc| super::max_abs_shifted(layer.weight.dtype, layer.weight.quant.zero_point(oc)))
            .max()
            .unwrap_or(0);
        let max_x = super::max_abs_shifted(layer.input.dtype, layer.input.zero_point);
        if (taps as i128) * (max_x as i128) * (max_w as i128) >= EXACT_LIMIT as i128 {
            return None;
        }
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let p = g.padding;
        let (hp, wp) = (g.in_h + p.top + p.bottom, g.in_w + p.left + p.right);
        let (hq, wq) = (hp.div_ceil(sh), wp.div_ceil(sw));
        let sub_len = hq * wq;
        let mut offsets = Vec::with_capacity(taps);
        let mut weights = vec![0f32; g.out_channels * taps];
        for r in 0..g.kernel[0] {
            for s in 0..g.kernel[1] {
                let (y, x) = (r * dh, s * dw);
                let phase = (y % sh) * sw + x % sw;
                offsets.push(phase * sub_len + (y / sh) * wq + x / sw);
            }
        }
        for oc in 0..g.out_channels {
            let zp = layer.weight.quant.zero_point(oc);
            for t in 0..taps {
                let (r, s) = (t / g.kernel[1], t % g.kernel[1]);
                let w = layer.weight.data[g.weight_index(oc, 0, r, s)] - zp;
                weights[oc * taps + t] = w as f32;
            }
        }
        let grid_len = (g.out_h() * wq).div_ceil(PLANAR_BLOCK) * PLANAR_BLOCK;
        let max_offset = offsets.iter().copied().max().unwrap_or(0);
        let buffer_len = (sh * sw * sub_len).max(max_offset + grid_len);
        Some(PlanarPlan {
            g,
            kernel,
            multiplier: g.group_out_channels(),
            taps,
            weights,
            offsets,
            input_zero_point: layer.input.zero_point,
            sub: (hq, wq),
            buffer_len,
            grid_len,
        })
    }

    /// Runs the layer on NCHW `input` into NCHW `out`, one input channel (and its `multiplier`
    /// output channels) per work item.
    pub(super) fn run<I, S>(&self, pool: Option<&rayon::ThreadPool>, input: &[I], out: &mut [S::Out], stage: &S)
    where
        I: Copy + Into<i32> + Sync,
        S: OutputStage,
    {
        let g = &self.g;
        let in_plane = g.in_h * g.in_w;
        let out_plane = g.out_h() * g.out_w();
        let item_len = self.multiplier * out_plane;
        if item_len == 0 {
            return;
        }
        let work = |scratch: &mut Scratch, (item, out): (usize, &mut [S::Out])| {
            let src = &input[item * in_plane..(item + 1) * in_plane];
            let job = ChannelJob {
                plan: self,
                channel: item % g.in_channels,
                src,
                out,
                scratch,
                stage,
            };
            crate::kernels::with_isa(self.kernel, job);
        };
        match pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                out.par_chunks_mut(item_len)
                    .enumerate()
                    .for_each_init(|| Scratch::new(self), work);
            }),
            None => {
                let mut scratch = Scratch::new(self);
                out.chunks_mut(item_len)
                    .enumerate()
                    .for_each(|item| work(&mut scratch, item));
            }
        }
    }

    /// Copies input channel plane `src` into the sub-planes of `buffer` (whose padding is
    /// already zero), zero point subtracted.
    #[inline(always)]
    fn fill<I: Copy + Into<i32>>(&self, src: &[I], buffer: &mut [f32]) {
        let g = &self.g;
        let [sh, sw] = g.stride;
        let (hq, wq) = self.sub;
        let (top, left) = (g.padding.top, g.padding.left);
        let zp = self.input_zero_point;
        let convert = |v: I| (v.into() - zp) as f32;
        for (iy, row) in src.chunks_exact(g.in_w).enumerate() {
            let y = iy + top;
            for px in 0..sw {
                // The first column of this phase, and where it lands in the sub-plane row.
                let ix0 = (px + sw - left % sw) % sw;
                if ix0 >= g.in_w {
                    continue;
                }
                let phase = (y % sh) * sw + px;
                let at = (phase * hq + y / sh) * wq + (ix0 + left) / sw;
                let count = (g.in_w - ix0).div_ceil(sw);
                let dst = &mut buffer[at..at + count];
                if sw == 1 {
                    for (d, &v) in dst.iter_mut().zip(row) {
                        *d = convert(v);
                    }
                } else {
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = convert(row[ix0 + k * sw]);
                    }
                }
            }
        }
    }
}

/// Per-worker buffers.
struct Scratch {
    /// The channel's sub-planes; padding positions stay zero across channels.
    buffer: Vec<f32>,
    /// Float sums over the `wq`-wide grid.
    grid: Vec<f32>,
    /// The sums of the real outputs of one channel, as int32.
    accs: Vec<i32>,
}

impl Scratch {
    fn new(plan: &PlanarPlan) -> Scratch {
        Scratch {
            buffer: vec![0.0; plan.buffer_len],
            grid: vec![0.0; plan.grid_len],
            accs: vec![0; plan.g.out_h() * plan.g.out_w()],
        }
    }
}

/// One input channel: fill its sub-planes, then each of its output channels.
struct ChannelJob<'a, I, S: OutputStage> {
    plan: &'a PlanarPlan,
    channel: usize,
    src: &'a [I],
    out: &'a mut [S::Out],
    scratch: &'a mut Scratch,
    stage: &'a S,
}

impl<I: Copy + Into<i32>, S: OutputStage> crate::kernels::VectorTask for ChannelJob<'_, I, S> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let plan = self.plan;
        let g = &plan.g;
        let (ow_len, wq) = (g.out_w(), plan.sub.1);
        let Scratch { buffer, grid, accs } = self.scratch;
        plan.fill(self.src, buffer);
        let plane = accs.len();
        for (k, out) in self.out.chunks_exact_mut(plane).enumerate() {
            let oc = self.channel * plan.multiplier + k;
            let weights = &plan.weights[oc * plan.taps..(oc + 1) * plan.taps];
            crate::kernels::planar_f32(plan.kernel, buffer, &plan.offsets, weights, grid);
            for (acc_row, grid_row) in accs.chunks_exact_mut(ow_len).zip(grid.chunks(wq)) {
                for (a, &v) in acc_row.iter_mut().zip(grid_row) {
                    // `v` is an integer below 2^24 in magnitude; adding 1.5 * 2^52 in f64
                    // leaves it, two's complement, in the low 32 bits (a conversion that
                    // vectorizes, unlike `as i32` with its NaN and range checks).
                    const MAGIC: f64 = 6_755_399_441_055_744.0;
                    *a = (v as f64 + MAGIC).to_bits() as u32 as i32;
                }
            }
            self.stage.run(accs, oc, out);
        }
    }
}

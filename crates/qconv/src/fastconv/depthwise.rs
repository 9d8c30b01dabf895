//! The depthwise route: one input and one output channel per group. Activations (zero point
//! subtracted) and weights are i16, channels innermost, padded to the kernel's channel block;
//! each output pixel sums its taps two at a time with `vpmaddwd` / `vpdpwssd` (or the scalar
//! loop), exactly.

use super::{OutputStage, Task, split_output};
use crate::geometry::ConvGeometry;
use crate::kernels::KernelIsa;
use crate::layer::ConvLayer;

pub(super) struct DepthwisePlan {
    kernel: KernelIsa,
    channels: usize,
    /// Channels padded to the kernel's block.
    padded: usize,
    taps: usize,
    /// SIMD kernels apply (the CPU has AVX2 and the kernel set is not scalar).
    simd: bool,
    /// `(w - w_zp)` per tap and padded channel, `[tap][padded]`.
    weights: Vec<i16>,
    /// The same, interleaved two taps at a time for the SIMD kernel (an odd last tap paired with
    /// zeros).
    interleaved: Vec<i16>,
    /// Accumulator lane -> channel offset within a block.
    lanes: Vec<usize>,
    block: usize,
    input_zero_point: i32,
}

impl DepthwisePlan {
    pub(super) fn new(layer: &ConvLayer, kernel: KernelIsa) -> Self {
        let g = &layer.geometry;
        let channels = g.out_channels;
        let taps = g.kernel[0] * g.kernel[1];
        let simd = kernel.has_avx2();
        let block = if simd { simd_block(kernel) } else { 1 };
        let padded = channels.div_ceil(block) * block;
        let mut weights = vec![0i16; taps * padded];
        for c in 0..channels {
            let zp = layer.weight.quant.zero_point(c);
            for t in 0..taps {
                let (r, s) = (t / g.kernel[1], t % g.kernel[1]);
                weights[t * padded + c] =
                    (layer.weight.data[g.weight_index(c, 0, r, s)] - zp) as i16;
            }
        }
        let mut interleaved = Vec::new();
        let mut lanes = Vec::new();
        if simd {
            lanes = simd_lanes(block);
            let zeros = vec![0i16; padded];
            for pair in 0..taps.div_ceil(2) {
                let w0 = &weights[2 * pair * padded..(2 * pair + 1) * padded];
                let w1 = if 2 * pair + 1 < taps {
                    &weights[(2 * pair + 1) * padded..(2 * pair + 2) * padded]
                } else {
                    &zeros[..]
                };
                interleave(w0, w1, block, &mut interleaved);
            }
        }
        DepthwisePlan {
            kernel,
            channels,
            padded,
            taps,
            simd,
            weights,
            interleaved,
            lanes,
            block,
            input_zero_point: layer.input.zero_point,
        }
    }

    pub(super) fn run<I, S>(
        &self,
        g: &ConvGeometry,
        pool: Option<&rayon::ThreadPool>,
        input: &[I],
        out: &mut [S::Out],
        stage: &S,
    ) where
        I: Copy + Into<i32> + Sync,
        S: OutputStage,
    {
        let [n_len, c_len, h, w] = g.input_shape();
        let (cp, plane) = (self.padded, h * w);
        let zp = self.input_zero_point;
        let mut nhwc = vec![0i16; n_len * plane * cp];
        const BLOCK: usize = 64;
        for n in 0..n_len {
            let src = &input[n * c_len * plane..(n + 1) * c_len * plane];
            let dst = &mut nhwc[n * plane * cp..(n + 1) * plane * cp];
            for p0 in (0..plane).step_by(BLOCK) {
                let p1 = (p0 + BLOCK).min(plane);
                for c in 0..c_len {
                    for (i, &v) in src[c * plane + p0..c * plane + p1].iter().enumerate() {
                        dst[(p0 + i) * cp + c] = (v.into() - zp) as i16;
                    }
                }
            }
        }
        let (oh_len, ow_len) = (g.out_h(), g.out_w());
        let threads = pool.map_or(1, |p| p.current_num_threads());
        let rows_per_task = if threads == 1 {
            oh_len
        } else {
            oh_len.div_ceil(threads * 4).max(1)
        };
        let mut tasks = split_output(
            out,
            n_len,
            self.channels,
            oh_len * ow_len,
            rows_per_task * ow_len,
        );
        let work = |task: &mut Task<S::Out>| self.run_task(g, &nhwc, task, stage);
        match pool {
            Some(pool) => pool.install(|| {
                use rayon::prelude::*;
                tasks.par_iter_mut().for_each(work);
            }),
            None => tasks.iter_mut().for_each(work),
        }
    }

    fn run_task<S: OutputStage>(&self, g: &ConvGeometry, nhwc: &[i16], task: &mut Task<S::Out>, stage: &S) {
        let cp = self.padded;
        let ow_len = g.out_w();
        let zeros = vec![0i16; cp];
        let mut row_acc = vec![0i32; ow_len * cp];
        let mut values = vec![S::Out::default(); ow_len * self.channels];
        let mut pixel = vec![0i32; cp];
        let even_taps = self.taps + self.taps % 2;
        let mut rows: Vec<&[i16]> = Vec::with_capacity(even_taps);
        let (oh0, oh1) = (task.p0 / ow_len, task.p1.div_ceil(ow_len));
        for oh in oh0..oh1 {
            for ow in 0..ow_len {
                rows.clear();
                for t in 0..self.taps {
                    let (r, s) = (t / g.kernel[1], t % g.kernel[1]);
                    rows.push(match g.tap_position(oh, ow, r, s) {
                        Some((ih, iw)) => {
                            let base = ((task.n * g.in_h + ih) * g.in_w + iw) * cp;
                            &nhwc[base..base + cp]
                        }
                        None => &zeros,
                    });
                }
                let acc = &mut row_acc[ow * cp..(ow + 1) * cp];
                if self.simd {
                    rows.resize(even_taps, &zeros);
                    self.simd_pixel(&rows, &mut pixel);
                    for base in (0..cp).step_by(self.block) {
                        for (lane, &offset) in self.lanes.iter().enumerate() {
                            acc[base + offset] = pixel[base + lane];
                        }
                    }
                } else {
                    acc.fill(0);
                    for (t, row) in rows.iter().enumerate() {
                        let wt = &self.weights[t * cp..(t + 1) * cp];
                        for ((a, &x), &wv) in acc.iter_mut().zip(row.iter()).zip(wt) {
                            *a = a.wrapping_add(x as i32 * wv as i32);
                        }
                    }
                }
            }
            let cl = self.channels;
            for ow in 0..ow_len {
                stage.row(&row_acc[ow * cp..ow * cp + cl], 0, &mut values[ow * cl..(ow + 1) * cl]);
            }
            let p = oh * ow_len - task.p0;
            for c in 0..cl {
                let out = &mut task.channels[c][p..p + ow_len];
                for (ow, slot) in out.iter_mut().enumerate() {
                    *slot = values[ow * cl + c];
                }
            }
        }
    }

    fn simd_pixel(&self, rows: &[&[i16]], acc: &mut [i32]) {
        #[cfg(target_arch = "x86_64")]
        crate::kernels::x86::depthwise_pixel(
            self.kernel,
            rows,
            &self.interleaved,
            self.padded,
            acc,
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("SIMD depthwise needs x86-64: {rows:?} {acc:?}")
    }
}

fn simd_block(kernel: KernelIsa) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::x86::depthwise_block(kernel)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kernel;
        1
    }
}

fn simd_lanes(block: usize) -> Vec<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        crate::kernels::x86::depthwise::lane_channels(block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (0..block).collect()
    }
}

fn interleave(w0: &[i16], w1: &[i16], block: usize, out: &mut Vec<i16>) {
    #[cfg(target_arch = "x86_64")]
    crate::kernels::x86::depthwise::interleave_weights(w0, w1, block, out);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (w0, w1, block, out);
}

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
//! [`Reduction::PairSaturating`] (FBGEMM's AVX2 depthwise kernel, u8 x s8 with symmetric
//! weights): the planes hold raw activations (padding holds the raw input zero point), taps are
//! summed two at a time and each pair clamped to int16 (`kernels::planar_f32` with `PlanarSum::SaturatingPairs`), and
//! `-x_zp * sum w` is added per output channel: the zero-point-corrected int32 accumulator,
//! exactly (every value is an integer far below 2^24).
//!
//! The phase split: with strides `(sh, sw)` the padded plane (`hp x wp`) becomes `sh * sw`
//! sub-planes of `hq x wq` (`hq = ceil(hp / sh)`, `wq = ceil(wp / sw)`); padded pixel `(y, x)`
//! lives in phase `(y % sh, x % sw)` at `(y / sh, x / sw)`. Tap `(r, s)` of output `(oh, ow)`
//! reads padded pixel `(oh * sh + r * dh, ow * sw + s * dw)`, which is sub-plane position
//! `(oh + r * dh / sh, ow + s * dw / sw)`: a fixed shift of the output's own position `(oh, ow)`
//! in a `wq`-wide grid. Columns `ow >= out_w` of that grid are computed and dropped.
//!
//! Channels are processed in bands of output rows, sized so that a band's sub-planes stay in
//! the L1 cache between the copy and the taps that read them; a band holds sub-plane rows
//! `oh0 .. oh0 + band_rows + (kh - 1) * dh / sh` (the last few are copied again by the next
//! band).

use super::{InputValue, OutputStage, OutputValue, Reduction};
use crate::geometry::ConvGeometry;
use crate::kernels::{KernelIsa, PLANAR_BLOCK, PlanarSum};
use crate::layer::ConvLayer;

/// Largest sum the float32 accumulation holds exactly.
const EXACT_LIMIT: i64 = 1 << 24;

/// Float32 values a band's sub-planes should stay under (16 KiB, a third of a typical L1).
const BAND_VALUES: usize = 4096;

pub(super) struct PlanarPlan {
    g: ConvGeometry,
    kernel: KernelIsa,
    /// Output channels per input channel.
    multiplier: usize,
    taps: usize,
    /// `w - w_zp` per output channel and tap, `[oc][tap]` (raw `w` with saturating pairs).
    weights: Vec<f32>,
    /// Whether taps are summed in saturating int16 pairs (raw activations).
    saturating: bool,
    /// What the copy holds in padding: 0 (zero point subtracted), or the raw input zero point.
    pad: f32,
    /// Per output channel, added to the sums (`-x_zp * sum w` with saturating pairs, else 0).
    acc_offsets: Vec<f32>,
    /// Per tap, where its shifted plane starts in the channel buffer.
    offsets: Vec<usize>,
    input_zero_point: i32,
    /// Sub-plane size of one band `(band_hq, wq)`.
    sub: (usize, usize),
    /// Output rows per band.
    band_rows: usize,
    /// Values in the band buffer: every sub-plane plus the slack the last block may read.
    buffer_len: usize,
    /// Outputs per band in the `wq`-wide grid, rounded up to whole kernel blocks.
    grid_len: usize,
}

impl PlanarPlan {
    /// The plan computing `reduction` on `layer`, or `None` when the layer has more than one
    /// input channel per group or its sums could exceed float32's exact integers; for
    /// saturating pairs also when it is not u8 x s8 with symmetric weights.
    pub(super) fn new(
        layer: &ConvLayer,
        reduction: Reduction,
        kernel: KernelIsa,
    ) -> Option<PlanarPlan> {
        Self::with_band_values(layer, reduction, kernel, BAND_VALUES)
    }

    /// [`Self::new`] with bands sized for `band_values` float32 values.
    fn with_band_values(
        layer: &ConvLayer,
        reduction: Reduction,
        kernel: KernelIsa,
        band_values: usize,
    ) -> Option<PlanarPlan> {
        let g = layer.geometry;
        if g.group_in_channels() != 1 {
            return None;
        }
        let taps = g.kernel[0] * g.kernel[1];
        let quant = &layer.weight.quant;
        let saturating = reduction == Reduction::PairSaturating;
        if saturating {
            let symmetric = (0..g.out_channels).all(|oc| quant.zero_point(oc) == 0);
            let u8s8 = layer.input.dtype == crate::DType::Uint8
                && layer.weight.dtype == crate::DType::Int8;
            // Clamped pairs, plus the zero-point term `x_zp * sum w`.
            let bound = taps.div_ceil(2) as i128 * 32768 + taps as i128 * 255 * 128;
            if !(symmetric && u8s8 && bound < EXACT_LIMIT as i128) {
                return None;
            }
        } else {
            let max_w = (0..g.out_channels)
                .map(|oc| super::max_abs_shifted(layer.weight.dtype, quant.zero_point(oc)))
                .max()
                .unwrap_or(0);
            let max_x = super::max_abs_shifted(layer.input.dtype, layer.input.zero_point);
            if (taps as i128) * (max_x as i128) * (max_w as i128) >= EXACT_LIMIT as i128 {
                return None;
            }
        }
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let p = g.padding;
        let wq = (g.in_w + p.left + p.right).div_ceil(sw);
        let phases = sh * sw;
        // Sub-plane rows beyond the band's own that its last output row reads.
        let reach = (g.kernel[0] - 1) * dh / sh;
        let band_rows = (band_values / (phases * wq))
            .saturating_sub(reach)
            .clamp(1, g.out_h().max(1));
        let band_hq = band_rows + reach;
        let sub_len = band_hq * wq;
        let mut offsets = Vec::with_capacity(taps);
        let mut weights = vec![0f32; g.out_channels * taps];
        for r in 0..g.kernel[0] {
            for s in 0..g.kernel[1] {
                let (y, x) = (r * dh, s * dw);
                let phase = (y % sh) * sw + x % sw;
                offsets.push(phase * sub_len + (y / sh) * wq + x / sw);
            }
        }
        let mut acc_offsets = vec![0f32; g.out_channels];
        for oc in 0..g.out_channels {
            let zp = quant.zero_point(oc);
            let mut sum = 0i32;
            for t in 0..taps {
                let (r, s) = (t / g.kernel[1], t % g.kernel[1]);
                let w = layer.weight.data[g.weight_index(oc, 0, r, s)] - zp;
                weights[oc * taps + t] = w as f32;
                sum += w;
            }
            if saturating {
                acc_offsets[oc] = (-layer.input.zero_point * sum) as f32;
            }
        }
        let grid_len = (band_rows * wq).div_ceil(PLANAR_BLOCK) * PLANAR_BLOCK;
        let max_offset = offsets.iter().copied().max().unwrap_or(0);
        let buffer_len = (phases * sub_len).max(max_offset + grid_len);
        Some(PlanarPlan {
            g,
            kernel,
            multiplier: g.group_out_channels(),
            taps,
            weights,
            saturating,
            pad: if saturating {
                layer.input.zero_point as f32
            } else {
                0.0
            },
            acc_offsets,
            offsets,
            input_zero_point: layer.input.zero_point,
            sub: (band_hq, wq),
            band_rows,
            buffer_len,
            grid_len,
        })
    }

    /// Whether taps are summed in saturating int16 pairs.
    pub(super) fn saturating(&self) -> bool {
        self.saturating
    }

    /// Runs the layer on NCHW `input` into NCHW `out`, one input channel (and its `multiplier`
    /// output channels) per work item.
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
        let in_plane = g.in_h * g.in_w;
        let out_plane = g.out_h() * g.out_w();
        let item_len = self.multiplier * out_plane;
        if item_len == 0 {
            return;
        }
        let work = |scratch: &mut Scratch<S::Out>, (item, out): (usize, &mut [S::Out])| {
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

    /// Copies the rows of input channel plane `src` that the band of output rows starting at
    /// `oh0` reads into the band's sub-planes in `buffer`, zero point subtracted (raw with
    /// saturating pairs); rows of padding become `pad` (columns of padding are never written,
    /// so keep the `pad` the buffer starts with).
    #[inline(always)]
    fn fill<I: Copy + Into<i32>>(&self, src: &[I], oh0: usize, buffer: &mut [f32]) {
        let g = &self.g;
        let [sh, sw] = g.stride;
        let (band_hq, wq) = self.sub;
        let (top, left) = (g.padding.top, g.padding.left);
        let zp = if self.saturating {
            0
        } else {
            self.input_zero_point
        };
        let convert = |v: I| (v.into() - zp) as f32;
        for q in 0..band_hq {
            for py in 0..sh {
                // Padded row `y` lives in phase row `py`, band sub-plane row `q`.
                let y = (oh0 + q) * sh + py;
                let row_start = |px: usize| ((py * sw + px) * band_hq + q) * wq;
                let iy = y.wrapping_sub(top);
                if iy >= g.in_h {
                    for px in 0..sw {
                        buffer[row_start(px)..row_start(px) + wq].fill(self.pad);
                    }
                    continue;
                }
                let row = &src[iy * g.in_w..(iy + 1) * g.in_w];
                super::split_row(row, left, sw, row_start, buffer, &convert);
            }
        }
    }
}

/// Per-worker buffers.
struct Scratch<T> {
    /// The channel's sub-planes; padding positions stay zero across channels.
    buffer: Vec<f32>,
    /// Float sums over the `wq`-wide grid.
    grid: Vec<f32>,
    /// The output stage's values over the grid (one call per channel: per-call costs matter
    /// with short rows).
    values: Vec<T>,
}

impl<T: OutputValue> Scratch<T> {
    fn new(plan: &PlanarPlan) -> Scratch<T> {
        Scratch {
            buffer: vec![plan.pad; plan.buffer_len],
            grid: vec![0.0; plan.grid_len],
            values: vec![T::default(); plan.band_rows * plan.sub.1],
        }
    }
}

/// One input channel: fill its sub-planes, then each of its output channels.
struct ChannelJob<'a, I, S: OutputStage> {
    plan: &'a PlanarPlan,
    channel: usize,
    src: &'a [I],
    out: &'a mut [S::Out],
    scratch: &'a mut Scratch<S::Out>,
    stage: &'a S,
}

impl<I: Copy + Into<i32>, S: OutputStage> crate::kernels::VectorTask for ChannelJob<'_, I, S> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let plan = self.plan;
        let g = &plan.g;
        let (ow_len, wq) = (g.out_w(), plan.sub.1);
        let Scratch {
            buffer,
            grid,
            values,
        } = self.scratch;
        let plane = g.out_h() * ow_len;
        let mut oh0 = 0;
        while oh0 < g.out_h() {
            let rows = plan.band_rows.min(g.out_h() - oh0);
            plan.fill(self.src, oh0, buffer);
            for (k, out) in self.out.chunks_exact_mut(plane).enumerate() {
                let oc = self.channel * plan.multiplier + k;
                let weights = &plan.weights[oc * plan.taps..(oc + 1) * plan.taps];
                let values = &mut values[..rows * wq];
                let sum = if plan.saturating {
                    PlanarSum::SaturatingPairs
                } else {
                    PlanarSum::Plain
                };
                crate::kernels::planar_f32(plan.kernel, sum, buffer, &plan.offsets, weights, grid);
                if plan.saturating {
                    let offset = plan.acc_offsets[oc];
                    for v in &mut grid[..values.len()] {
                        *v += offset;
                    }
                }
                self.stage
                    .run(plan.kernel, &grid[..values.len()], oc, values);
                let out = &mut out[oh0 * ow_len..(oh0 + rows) * ow_len];
                for (out_row, row) in out.chunks_exact_mut(ow_len).zip(values.chunks(wq)) {
                    out_row.copy_from_slice(&row[..ow_len]);
                }
            }
            oh0 += rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastconv::output::Accumulators;

    /// Bands of every size, down to one output row, give the reference's sums (the proptests
    /// mostly see single-band planes).
    #[test]
    fn bands_of_any_size_match_the_reference() {
        let names = ["mv2_dw3x3s2_96_112", "lenet_5x5_1to6_32", "seed_5x5_1to1"];
        for suite in crate::bench::SUITE
            .iter()
            .filter(|l| names.contains(&l.name))
        {
            // Depthwise layers cut to 8 channels keep the reference loop quick.
            let layer = if suite.groups > 1 {
                crate::bench::SuiteLayer {
                    channels: 8,
                    out_channels: 8,
                    groups: 8,
                    ..*suite
                }
                .build()
            } else {
                suite.build()
            };
            let reference: Vec<i32> = crate::engines::exact::reference_accumulators(&layer)
                .into_iter()
                .map(|a| a as i32)
                .collect();
            let input: Vec<u8> = layer.input.data.iter().map(|&v| v as u8).collect();
            for kernel in KernelIsa::available() {
                for band_values in [1, 150, 700, BAND_VALUES] {
                    let plan =
                        PlanarPlan::with_band_values(&layer, Reduction::Exact, kernel, band_values)
                            .expect("planar");
                    let mut out = vec![i32::MIN; reference.len()];
                    plan.run(None, &input, &mut out, &Accumulators);
                    assert_eq!(out, reference, "{} {kernel} band {band_values}", layer.name);
                }
            }
        }
    }
}

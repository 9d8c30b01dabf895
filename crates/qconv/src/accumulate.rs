//! Accumulation: the reduction of one output element's taps into an accumulator.
//!
//! Every engine model is "accumulate, then requantize". This module owns the first half's shared
//! machinery: the im2col walk (one row of `K = KH * KW * C/groups` input values per output
//! position, in tap-major order, padding filled with a chosen value), weights packed into rows of
//! the same order, and the accumulators engines use on those rows. The reference loop here is
//! deliberately plain; fast kernels replace [`accumulate`] without touching requantization.

use crate::geometry::{ConvGeometry, ReductionOrder};
use crate::numerics::sat16;

/// Packs OIHW weights into one row per output channel in reduction order `order`.
pub fn pack_weight_rows<T: Copy>(g: &ConvGeometry, order: ReductionOrder, weight: &[T]) -> Vec<T> {
    (0..g.out_channels)
        .flat_map(|oc| weight_row(g, order, weight, oc))
        .collect()
}

/// The weight row of output channel `oc` in reduction order `order` (one row of
/// [`pack_weight_rows`]).
pub fn weight_row<T: Copy>(
    g: &ConvGeometry,
    order: ReductionOrder,
    weight: &[T],
    oc: usize,
) -> Vec<T> {
    (0..g.reduction_len())
        .map(|k| {
            let (r, s, c) = g.reduction_index(order, k);
            weight[g.weight_index(oc, c, r, s)]
        })
        .collect()
}

/// Fills `row` with the im2col row of output position (`n`, group `grp`, `oh`, `ow`): input
/// values in reduction order `order`, `pad` where a tap falls outside the image.
pub fn gather_row<T: Copy>(
    g: &ConvGeometry,
    order: ReductionOrder,
    input: &[T],
    pad: T,
    [n, grp, oh, ow]: [usize; 4],
    row: &mut [T],
) {
    let cg = g.group_in_channels();
    let [kh, kw] = g.kernel;
    match order {
        ReductionOrder::TapMajor => {
            let mut k = 0;
            for r in 0..kh {
                for s in 0..kw {
                    match g.tap_position(oh, ow, r, s) {
                        Some((ih, iw)) => {
                            for c in 0..cg {
                                row[k + c] = input[g.input_index(n, grp * cg + c, ih, iw)];
                            }
                        }
                        None => row[k..k + cg].fill(pad),
                    }
                    k += cg;
                }
            }
        }
        ReductionOrder::ChannelMajor => {
            for c in 0..cg {
                for r in 0..kh {
                    for s in 0..kw {
                        row[(c * kh + r) * kw + s] = match g.tap_position(oh, ow, r, s) {
                            Some((ih, iw)) => input[g.input_index(n, grp * cg + c, ih, iw)],
                            None => pad,
                        };
                    }
                }
            }
        }
    }
}

/// How an engine reduces one im2col row against one weight row.
pub trait Accumulation: Sync {
    /// Element type of rows (raw integers, or dequantized floats).
    type Elem: Copy + Send + Sync;
    /// The accumulator.
    type Acc: Copy + Default + Send;
    /// The value out-of-image taps hold.
    fn pad_value(&self) -> Self::Elem;
    /// The order the engine walks taps in.
    fn order(&self) -> ReductionOrder {
        ReductionOrder::TapMajor
    }
    /// Reduces `row` against `weights` (the packed row of output channel `oc`).
    fn accumulate(&self, row: &[Self::Elem], weights: &[Self::Elem], oc: usize) -> Self::Acc;
}

/// Runs `acc` over every output element. `input` is NCHW, `weight` OIHW; the result is NCHW
/// (`[N, OC, OH, OW]`).
pub fn accumulate<A: Accumulation>(
    g: &ConvGeometry,
    input: &[A::Elem],
    weight: &[A::Elem],
    acc: &A,
) -> Vec<A::Acc> {
    let order = acc.order();
    let weight_rows = pack_weight_rows(g, order, weight);
    let [n_len, oc_len, oh_len, ow_len] = g.output_shape();
    let (k_len, ocg) = (g.reduction_len(), g.group_out_channels());
    let mut out = vec![A::Acc::default(); n_len * oc_len * oh_len * ow_len];
    let mut row = vec![acc.pad_value(); k_len];
    for n in 0..n_len {
        for grp in 0..g.groups {
            for oh in 0..oh_len {
                for ow in 0..ow_len {
                    gather_row(g, order, input, acc.pad_value(), [n, grp, oh, ow], &mut row);
                    for oc in grp * ocg..(grp + 1) * ocg {
                        let w = &weight_rows[oc * k_len..(oc + 1) * k_len];
                        out[g.output_index(n, oc, oh, ow)] = acc.accumulate(&row, w, oc);
                    }
                }
            }
        }
    }
    out
}

/// Exact accumulation of `sum (a - a_zp) * (w - w_zp[oc])` in 64 bits: no overflow is possible
/// for any reduction length below 2^47, far beyond any tensor qconv accepts.
pub struct ExactAccumulator<'a> {
    pub input_zero_point: i32,
    /// Weight zero point of every output channel.
    pub weight_zero_points: &'a [i32],
}

impl Accumulation for ExactAccumulator<'_> {
    type Elem = i32;
    type Acc = i64;

    fn pad_value(&self) -> i32 {
        // A padded tap stands for real 0, i.e. the input zero point.
        self.input_zero_point
    }

    #[inline]
    fn accumulate(&self, row: &[i32], weights: &[i32], oc: usize) -> i64 {
        let wz = self.weight_zero_points[oc] as i64;
        let az = self.input_zero_point as i64;
        row.iter()
            .zip(weights)
            .map(|(&a, &w)| (a as i64 - az) * (w as i64 - wz))
            .sum()
    }
}

/// The sum of raw products taken two at a time, each pair saturated to int16:
/// `sum_p sat16(a[2p] * w[2p] + a[2p+1] * w[2p+1])`, an odd last element paired with zero.
/// This is what `vpmaddubsw` (u8 x s8 -> saturating i16 pair sums) followed by `vpmaddwd` with
/// ones and `vpaddd` computes. The int32 sum wraps, as `vpaddd` does.
#[inline]
pub fn pair_saturating_dot(a: &[i32], w: &[i32]) -> i32 {
    let mut acc = 0i32;
    let mut pairs_a = a.chunks_exact(2);
    let mut pairs_w = w.chunks_exact(2);
    for (pa, pw) in (&mut pairs_a).zip(&mut pairs_w) {
        acc = acc.wrapping_add(sat16(pa[0] * pw[0] + pa[1] * pw[1]));
    }
    if let ([a0], [w0]) = (pairs_a.remainder(), pairs_w.remainder()) {
        acc = acc.wrapping_add(sat16(a0 * w0));
    }
    acc
}

/// One tap of a product pair: where its activation and weight come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairTap {
    /// Reduction index within the group.
    pub k: u32,
    /// `[n, c, h, w]` of the input element, or `None` for a padded tap (which holds the input
    /// zero point). (32-bit: explanations hold millions of taps.)
    pub input: Option<[u32; 4]>,
    /// `[oc, c, kh, kw]` of the weight element.
    pub weight: [u32; 4],
    /// Raw activation value.
    pub activation: i32,
    /// Raw weight value.
    pub weight_value: i32,
}

/// A pair of products that int16 saturation changed: `sum` is
/// `a0 * w0 + a1 * w1`, `saturated` what the kernel kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaturatedPair {
    /// Pair number `p` (taps `2p` and `2p + 1` of the group's reduction order).
    pub pair: usize,
    /// The pair's taps (one when the reduction length is odd and this is the last pair).
    pub taps: PairTaps,
    pub sum: i32,
    pub saturated: i32,
}

/// One or two taps, stored inline (explanations hold millions of pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairTaps {
    taps: [PairTap; 2],
    len: usize,
}

impl PairTaps {
    /// The taps `first` and, when there is one, `second`.
    pub fn new(first: PairTap, second: Option<PairTap>) -> PairTaps {
        PairTaps {
            taps: [first, second.unwrap_or(first)],
            len: 1 + second.is_some() as usize,
        }
    }
}

impl std::ops::Deref for PairTaps {
    type Target = [PairTap];

    fn deref(&self) -> &[PairTap] {
        &self.taps[..self.len]
    }
}

impl SaturatedPair {
    /// What saturation added to the accumulator: `saturated - sum`.
    pub fn clipped(&self) -> i64 {
        self.saturated as i64 - self.sum as i64
    }
}

/// The pairs that int16 saturation changes in output element `[n, oc, oh, ow]`, with raw
/// `input` (NCHW) and `weight` (OIHW) values and padded taps holding `pad`, pairing taps of
/// `order` as [`pair_saturating_dot`] does.
pub fn saturated_pairs(
    g: &ConvGeometry,
    order: ReductionOrder,
    input: &[i32],
    weight: &[i32],
    pad: i32,
    [n, oc, oh, ow]: [usize; 4],
) -> Vec<SaturatedPair> {
    let grp = oc / g.group_out_channels();
    let mut row = vec![pad; g.reduction_len()];
    gather_row(g, order, input, pad, [n, grp, oh, ow], &mut row);
    let weights = weight_row(g, order, weight, oc);
    saturated_pairs_in_rows(g, order, &row, &weights, [n, oc, oh, ow])
}

/// [`saturated_pairs`] from the element's im2col `row` ([`gather_row`]) and its output channel's
/// `weights` row ([`weight_row`]), both in order `order`: for callers that explain many
/// elements and keep the weight rows.
pub fn saturated_pairs_in_rows(
    g: &ConvGeometry,
    order: ReductionOrder,
    row: &[i32],
    weights: &[i32],
    [n, oc, oh, ow]: [usize; 4],
) -> Vec<SaturatedPair> {
    let cg = g.group_in_channels();
    let grp = oc / g.group_out_channels();
    let tap = |k: usize| {
        let (r, s, c) = g.reduction_index(order, k);
        PairTap {
            // Layer sizes are capped far below 2^32 (geometry::MAX_ELEMENTS).
            k: k as u32,
            input: g
                .tap_position(oh, ow, r, s)
                .map(|(ih, iw)| [n, grp * cg + c, ih, iw].map(|x| x as u32)),
            weight: [oc, c, r, s].map(|x| x as u32),
            activation: row[k],
            weight_value: weights[k],
        }
    };
    let mut out = Vec::new();
    let pairs = row.chunks_exact(2).zip(weights.chunks_exact(2));
    for (p, (a, w)) in pairs.enumerate() {
        let sum = a[0] * w[0] + a[1] * w[1];
        let saturated = sat16(sum);
        if saturated != sum {
            out.push(SaturatedPair {
                pair: p,
                taps: PairTaps::new(tap(2 * p), Some(tap(2 * p + 1))),
                sum,
                saturated,
            });
        }
    }
    if row.len() % 2 == 1 {
        // An odd reduction ends with a lone product, which never saturates int16 (|a w| <= 2^15).
        let k = row.len() - 1;
        let sum = row[k] * weights[k];
        let saturated = sat16(sum);
        if saturated != sum {
            out.push(SaturatedPair {
                pair: k / 2,
                taps: PairTaps::new(tap(k), None),
                sum,
                saturated,
            });
        }
    }
    out
}

/// The plain int32 sum of raw products with wrap-around, what `vpdpbusd` computes.
#[inline]
pub fn wrapping_dot(a: &[i32], w: &[i32]) -> i32 {
    a.iter()
        .zip(w)
        .fold(0i32, |acc, (&a, &w)| acc.wrapping_add(a.wrapping_mul(w)))
}

/// The accumulator of engines that multiply raw (unshifted) u8 activations by raw s8 weights and
/// remove the zero points afterwards with row and column sums, as FBGEMM and ONNX Runtime do:
///
/// `raw = dot(a, w) - a_zp * (sum w - w_zp * K) - (sum a) * w_zp`   (int32, wrapping)
///
/// where `dot` is [`pair_saturating_dot`] when `saturating`, else exact. Padded taps hold the
/// raw input zero point and take part in the pairs and in `sum a`.
pub struct ZeroPointCorrectedAccumulator<'a> {
    pub input_zero_point: i32,
    pub weight_zero_points: &'a [i32],
    /// `sum w - w_zp * K` of every output channel.
    pub column_offsets: Vec<i32>,
    /// Whether products are summed in saturating int16 pairs.
    pub saturating: bool,
    /// The order taps are walked (and paired) in.
    pub order: ReductionOrder,
}

impl<'a> ZeroPointCorrectedAccumulator<'a> {
    /// Builds the accumulator, precomputing column offsets from the OIHW `weight` (each output
    /// channel's `k_len` weights are contiguous).
    pub fn new(
        input_zero_point: i32,
        weight_zero_points: &'a [i32],
        weight: &[i32],
        k_len: usize,
        saturating: bool,
        order: ReductionOrder,
    ) -> Self {
        let column_offsets = weight
            .chunks_exact(k_len.max(1))
            .zip(weight_zero_points)
            .map(|(w, &wz)| {
                let sum = w.iter().fold(0i32, |s, &v| s.wrapping_add(v));
                sum.wrapping_sub(wz.wrapping_mul(k_len as i32))
            })
            .collect();
        ZeroPointCorrectedAccumulator {
            input_zero_point,
            weight_zero_points,
            column_offsets,
            saturating,
            order,
        }
    }
}

impl Accumulation for ZeroPointCorrectedAccumulator<'_> {
    type Elem = i32;
    type Acc = i32;

    fn pad_value(&self) -> i32 {
        self.input_zero_point
    }

    fn order(&self) -> ReductionOrder {
        self.order
    }

    #[inline]
    fn accumulate(&self, row: &[i32], weights: &[i32], oc: usize) -> i32 {
        let dot = if self.saturating {
            pair_saturating_dot(row, weights)
        } else {
            wrapping_dot(row, weights)
        };
        let row_offset = row.iter().fold(0i32, |s, &v| s.wrapping_add(v));
        dot.wrapping_sub(self.input_zero_point.wrapping_mul(self.column_offsets[oc]))
            .wrapping_sub(row_offset.wrapping_mul(self.weight_zero_points[oc]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_saturation_of_the_forum_case() {
        // The forum case's 25 weights against activation 200: two pairs saturate.
        let w = [
            9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31, 50,
            48, 23, -3, 64, -87, -91,
        ];
        let a = [200; 25];
        assert_eq!(pair_saturating_dot(&a, &w), -53736);
        assert_eq!(wrapping_dot(&a, &w), -71600);
        let wz = [-11];
        let tm = ReductionOrder::TapMajor;
        let corrected = ZeroPointCorrectedAccumulator::new(33, &wz, &w, 25, true, tm);
        assert_eq!(corrected.accumulate(&a, &w, 0), 4003);
        let exact = ZeroPointCorrectedAccumulator::new(33, &wz, &w, 25, false, tm);
        assert_eq!(exact.accumulate(&a, &w, 0), -13861);
        let e = ExactAccumulator {
            input_zero_point: 33,
            weight_zero_points: &wz,
        };
        assert_eq!(e.accumulate(&a, &w, 0), -13861);
    }

    #[test]
    fn saturated_pairs_of_the_forum_case() {
        let g = ConvGeometry {
            batch: 1,
            in_channels: 1,
            in_h: 5,
            in_w: 5,
            out_channels: 1,
            kernel: [5, 5],
            stride: [1, 1],
            dilation: [1, 1],
            padding: crate::geometry::Padding::default(),
            groups: 1,
        };
        let w = [
            9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31, 50,
            48, 23, -3, 64, -87, -91,
        ];
        let pairs = saturated_pairs(
            &g,
            ReductionOrder::TapMajor,
            &[200; 25],
            &w,
            33,
            [0, 0, 0, 0],
        );
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            (pairs[0].pair, pairs[0].sum, pairs[0].saturated),
            (2, -32800, -32768)
        );
        assert_eq!(pairs[0].taps[0].weight, [0, 0, 0, 4]);
        assert_eq!(pairs[0].taps[1].weight, [0, 0, 1, 0]);
        assert_eq!(pairs[0].taps[1].input, Some([0, 0, 1, 0]));
        assert_eq!((pairs[1].pair, pairs[1].clipped()), (5, 17832));
        assert_eq!(pairs.iter().map(SaturatedPair::clipped).sum::<i64>(), 17864);
    }

    #[test]
    fn odd_tail_is_paired_with_zero() {
        assert_eq!(pair_saturating_dot(&[255], &[-128]), -32640);
        assert_eq!(
            pair_saturating_dot(&[255, 255, 255], &[127, 127, 127]),
            32767 + 32385
        );
    }
}

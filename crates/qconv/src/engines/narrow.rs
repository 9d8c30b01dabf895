//! Accumulators narrower than 32 bits, as an accelerator might build them: what a layer's outputs
//! become when every partial sum must fit in `bits` bits.
//!
//! The accumulator starts at the bias, then adds the products `w * (x - x_zp)` one at a time in
//! TFLite's reference order (filter row, filter column, input channel; taps outside the image
//! add nothing), over the shared im2col walk (`accumulate::accumulate`). After every addition the value is brought back into `bits` bits: clamped to
//! `[-2^(bits-1), 2^(bits-1) - 1]` (`saturate`) or reduced modulo `2^bits` into that range
//! (`wrap`, two's complement). With `wrap` the order does not matter; with `saturate` it does.

use std::fmt;
use std::str::FromStr;

use crate::accumulate::Accumulation;
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::quant::WeightQuant;

/// What a narrow accumulator does when a sum leaves its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Clamp to the nearest representable value.
    Saturate,
    /// Keep the low bits (two's complement wrap-around).
    Wrap,
}

impl Overflow {
    pub fn name(self) -> &'static str {
        match self {
            Overflow::Saturate => "saturate",
            Overflow::Wrap => "wrap",
        }
    }
}

impl FromStr for Overflow {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "saturate" => Ok(Overflow::Saturate),
            "wrap" => Ok(Overflow::Wrap),
            _ => Err(Error::invalid(
                "acc-overflow",
                format!("unknown overflow behaviour `{s}` (expected saturate or wrap)"),
            )),
        }
    }
}

/// An accumulator width to model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccumulatorWidth {
    /// Bits, two's complement, 2 to 32.
    pub bits: u32,
    pub overflow: Overflow,
}

impl fmt::Display for AccumulatorWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-bit accumulator ({})",
            self.bits,
            self.overflow.name()
        )
    }
}

impl AccumulatorWidth {
    /// Checks the width: 2 to 32 bits.
    pub fn new(bits: u32, overflow: Overflow) -> Result<Self> {
        if !(2..=32).contains(&bits) {
            return Err(Error::invalid(
                "acc-bits",
                format!("{bits}: an accumulator width must be 2 to 32 bits"),
            ));
        }
        Ok(AccumulatorWidth { bits, overflow })
    }

    /// The representable range.
    pub fn range(self) -> (i64, i64) {
        (-(1i64 << (self.bits - 1)), (1i64 << (self.bits - 1)) - 1)
    }

    /// `v` brought into the accumulator's range.
    #[inline]
    pub fn narrow(self, v: i64) -> i64 {
        let (lo, hi) = self.range();
        match self.overflow {
            Overflow::Saturate => v.clamp(lo, hi),
            Overflow::Wrap => {
                let shift = 64 - self.bits;
                (v << shift) >> shift
            }
        }
    }
}

/// The narrow accumulation as an [`Accumulation`] over the shared im2col walk: bias first, then
/// each product in tap-major order (the reference order). Padded taps hold the input zero point,
/// so their products are 0 and leave the accumulator as it is, as skipping them does.
struct NarrowAccumulator<'a> {
    width: AccumulatorWidth,
    bias: Vec<i32>,
    input_zero_point: i32,
    weight_quant: &'a WeightQuant,
}

impl Accumulation for NarrowAccumulator<'_> {
    type Elem = i32;
    type Acc = i64;

    fn pad_value(&self) -> i32 {
        self.input_zero_point
    }

    fn accumulate(&self, row: &[i32], weights: &[i32], oc: usize) -> i64 {
        let (x_zp, w_zp) = (
            self.input_zero_point as i64,
            self.weight_quant.zero_point(oc) as i64,
        );
        row.iter()
            .zip(weights)
            .fold(self.width.narrow(self.bias[oc] as i64), |acc, (&x, &w)| {
                self.width
                    .narrow(acc + (w as i64 - w_zp) * (x as i64 - x_zp))
            })
    }
}

/// Every output element's narrow accumulator, bias included (NCHW), computed in the order the
/// module documentation gives.
pub fn accumulate(layer: &ConvLayer, width: AccumulatorWidth) -> Vec<i64> {
    let model = NarrowAccumulator {
        width,
        bias: layer.int32_bias(),
        input_zero_point: layer.input.zero_point,
        weight_quant: &layer.weight.quant,
    };
    crate::accumulate::accumulate(
        &layer.geometry,
        &layer.input.data,
        &layer.weight.data,
        &model,
    )
}

/// The narrow accumulators without the bias, wrapped to int32 (what a requantizer that adds the
/// bias itself consumes): `accumulate(..) - bias`, modulo 2^32.
pub fn accumulators_without_bias(layer: &ConvLayer, width: AccumulatorWidth) -> Vec<i32> {
    let g = &layer.geometry;
    let plane = g.out_h() * g.out_w();
    let bias = layer.int32_bias();
    accumulate(layer, width)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a - bias[i / plane % g.out_channels] as i64) as i32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing() {
        let w = AccumulatorWidth::new(8, Overflow::Wrap).unwrap();
        assert_eq!(w.narrow(127), 127);
        assert_eq!(w.narrow(128), -128);
        assert_eq!(w.narrow(-129), 127);
        let s = AccumulatorWidth::new(8, Overflow::Saturate).unwrap();
        assert_eq!(s.narrow(1000), 127);
        assert_eq!(s.narrow(-1000), -128);
        let full = AccumulatorWidth::new(32, Overflow::Wrap).unwrap();
        assert_eq!(full.narrow(1 << 31), i32::MIN as i64);
        assert!(AccumulatorWidth::new(1, Overflow::Wrap).is_err());
        assert!(AccumulatorWidth::new(33, Overflow::Wrap).is_err());
        assert!("clip".parse::<Overflow>().is_err());
    }
}

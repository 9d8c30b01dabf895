//! Accumulators narrower than 32 bits, as an accelerator might build them: what a layer's outputs
//! become when every partial sum must fit in `bits` bits.
//!
//! The accumulator starts at the bias, then adds the products `w * (x - x_zp)` one at a time in
//! TFLite's reference order (filter row, filter column, input channel; taps outside the image
//! are skipped). After every addition the value is brought back into `bits` bits: clamped to
//! `[-2^(bits-1), 2^(bits-1) - 1]` (`saturate`) or reduced modulo `2^bits` into that range
//! (`wrap`, two's complement). With `wrap` the order does not matter; with `saturate` it does.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::layer::{Bias, ConvLayer};

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

/// The bias of channel `oc` as an integer (TFLite engines take int32 bias only).
fn int_bias(layer: &ConvLayer, oc: usize) -> i64 {
    match &layer.bias {
        Some(Bias::Int32(b)) => b[oc] as i64,
        _ => 0,
    }
}

/// Every output element's narrow accumulator, bias included (NCHW), computed in the order the
/// module documentation gives.
pub fn accumulate(layer: &ConvLayer, width: AccumulatorWidth) -> Vec<i64> {
    let g = &layer.geometry;
    let [n_len, oc_len, oh_len, ow_len] = g.output_shape();
    let (c_len, h_len, w_len) = (g.in_channels, g.in_h, g.in_w);
    let [kh_len, kw_len] = g.kernel;
    let cg = c_len / g.groups;
    let ocg = oc_len / g.groups;
    let x = &layer.input.data;
    let w = &layer.weight.data;
    let x_zp = layer.input.zero_point as i64;
    let mut out = Vec::with_capacity(layer.output_len());
    for n in 0..n_len {
        for oc in 0..oc_len {
            let group = oc / ocg;
            let w_zp = layer.weight.quant.zero_point(oc) as i64;
            for oh in 0..oh_len {
                for ow in 0..ow_len {
                    let mut acc = width.narrow(int_bias(layer, oc));
                    for ky in 0..kh_len {
                        let iy = (oh * g.stride[0] + ky * g.dilation[0]) as isize
                            - g.padding.top as isize;
                        if iy < 0 || iy >= h_len as isize {
                            continue;
                        }
                        for kx in 0..kw_len {
                            let ix = (ow * g.stride[1] + kx * g.dilation[1]) as isize
                                - g.padding.left as isize;
                            if ix < 0 || ix >= w_len as isize {
                                continue;
                            }
                            for ic in 0..cg {
                                let c = group * cg + ic;
                                let xv = x
                                    [((n * c_len + c) * h_len + iy as usize) * w_len + ix as usize]
                                    as i64;
                                let wv = w[((oc * cg + ic) * kh_len + ky) * kw_len + kx] as i64;
                                acc = width.narrow(acc + (wv - w_zp) * (xv - x_zp));
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

/// The narrow accumulators without the bias, wrapped to int32 (what a requantizer that adds the
/// bias itself consumes): `accumulate(..) - bias`, modulo 2^32.
pub fn accumulators_without_bias(layer: &ConvLayer, width: AccumulatorWidth) -> Vec<i32> {
    let g = &layer.geometry;
    let plane = g.out_h() * g.out_w();
    accumulate(layer, width)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a - int_bias(layer, i / plane % g.out_channels)) as i32)
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

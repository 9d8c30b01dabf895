//! Float32 requantization schemes of x86 engines.

use super::{RequantTrace, Requantizer};
use crate::dtype::DType;
use crate::kernels::scalar::Fp32Run;
use crate::numerics::{cvtps2dq, sat16};

/// How a float32 requantizer turns the scaled value into an output integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fp32Store {
    /// `cvtps2dq` (ties to even), `packs_epi32` (to int16, saturating), `adds_epi16` with the zero
    /// point (saturating), `packus_epi16` / `packs_epi16` (to 8 bits), then a clamp to the
    /// output range (`min_epu8` / `max_epu8`). FBGEMM and PyTorch's QNNPACK store this way.
    PackChain,
    /// Clamp the float to `[lo - zp, hi - zp]` first, then `cvtps2dq` and add the zero point in
    /// int32 (ONNX Runtime's MLAS, XNNPACK).
    FloatClamp,
}

impl Fp32Store {
    /// The trace of storing the scaled float `s`: the value rounded (zero point included), the
    /// integer before clamping, and the stored output.
    pub fn trace(self, s: f32, zero_point: i32, dtype: DType, lo: i32, hi: i32) -> RequantTrace {
        let unclamped = match self {
            Fp32Store::PackChain => cvtps2dq(s) as i64 + zero_point as i64,
            Fp32Store::FloatClamp => (s as f64).round_ties_even() as i64 + zero_point as i64,
        };
        RequantTrace {
            value: s as f64 + zero_point as f64,
            unclamped,
            output: self.apply(s, zero_point, dtype, lo, hi),
        }
    }

    /// Applies the store to a scaled float `s`.
    #[inline(always)]
    pub fn apply(self, s: f32, zero_point: i32, dtype: DType, lo: i32, hi: i32) -> i32 {
        match self {
            Fp32Store::PackChain => {
                let v = sat16(sat16(cvtps2dq(s)) + zero_point);
                let v = dtype.saturate(v as i64);
                v.clamp(lo, hi)
            }
            Fp32Store::FloatClamp => {
                let (flo, fhi) = ((lo - zero_point) as f32, (hi - zero_point) as f32);
                // maxps / minps: a NaN takes the bound.
                let c = if s > flo { s } else { flo };
                let c = if c < fhi { c } else { fhi };
                cvtps2dq(c) + zero_point
            }
        }
    }
}

/// `y = store(f32(f32(acc + bias[oc]) * multiplier[oc]))`: an integer bias added to the int32
/// accumulator (wrapping), one conversion to float, one float multiply. The multipliers are built
/// by the engine model with its engine's formula.
#[derive(Clone, Debug)]
pub struct Fp32Requantizer {
    pub multipliers: Vec<f32>,
    /// Quantized bias per output channel (zeros without bias).
    pub bias: Vec<i32>,
    pub zero_point: i32,
    pub dtype: DType,
    /// Output range after any fused activation.
    pub range: (i32, i32),
    pub store: Fp32Store,
}

impl Fp32Requantizer {
    /// The float the store rounds: `f32(acc + bias) * multiplier`.
    #[inline(always)]
    pub fn scaled(&self, acc: i32, oc: usize) -> f32 {
        (acc.wrapping_add(self.bias[oc]) as f32) * self.multipliers[oc]
    }
}

impl Requantizer for Fp32Requantizer {
    type Acc = i32;

    fn trace(&self, acc: i32, oc: usize) -> RequantTrace {
        self.store.trace(
            self.scaled(acc, oc),
            self.zero_point,
            self.dtype,
            self.range.0,
            self.range.1,
        )
    }

    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i32 {
        self.store.apply(
            self.scaled(acc, oc),
            self.zero_point,
            self.dtype,
            self.range.0,
            self.range.1,
        )
    }

    fn fp32_run(&self, oc: usize) -> Option<Fp32Run> {
        Some(Fp32Run {
            int_add: self.bias[oc],
            bias: 0.0,
            reciprocal: 0.0,
            multiplier: self.multipliers[oc],
            zero_point: self.zero_point,
            pack_chain: self.store == Fp32Store::PackChain,
            dtype_range: (self.dtype.min() as i32, self.dtype.max() as i32),
            range: self.range,
        })
    }
}

/// How a float bias enters [`FloatBiasFp32Requantizer`].
#[derive(Clone, Debug)]
pub enum FloatBiasTerm {
    /// No bias.
    None,
    /// `fma(bias[oc], reciprocal[oc], f32(acc))`: the bias times a precomputed reciprocal of the
    /// accumulator scale, added to the accumulator with a single rounding. FBGEMM's per-tensor
    /// scheme: its `add(acc, mul(bias, rcp))` is contracted into one FMA by the compiler.
    FusedReciprocal {
        bias: Vec<f32>,
        reciprocal: Vec<f32>,
    },
    /// `f32(acc) + term[oc]`, the term already in accumulator units (FBGEMM's per-channel
    /// scheme divides the bias by the accumulator scale, which cannot fuse).
    Precomputed(Vec<f32>),
}

/// FBGEMM's requantization with a float bias: the int32 accumulator is converted to float, the
/// bias (brought to accumulator units in float) is added, the sum is multiplied by the
/// multiplier, rounded with `cvtps2dq` and stored through the pack chain.
#[derive(Clone, Debug)]
pub struct FloatBiasFp32Requantizer {
    pub multipliers: Vec<f32>,
    pub bias: FloatBiasTerm,
    pub zero_point: i32,
    pub range: (i32, i32),
}

impl FloatBiasFp32Requantizer {
    /// The accumulator plus bias, in float, as the engine forms it.
    #[inline(always)]
    pub fn biased(&self, acc: i32, oc: usize) -> f32 {
        let f = acc as f32;
        match &self.bias {
            FloatBiasTerm::None => f,
            FloatBiasTerm::FusedReciprocal { bias, reciprocal } => {
                bias[oc].mul_add(reciprocal[oc], f)
            }
            FloatBiasTerm::Precomputed(terms) => f + terms[oc],
        }
    }

    /// The float the store rounds.
    #[inline(always)]
    pub fn scaled(&self, acc: i32, oc: usize) -> f32 {
        self.biased(acc, oc) * self.multipliers[oc]
    }
}

impl Requantizer for FloatBiasFp32Requantizer {
    type Acc = i32;

    fn trace(&self, acc: i32, oc: usize) -> RequantTrace {
        Fp32Store::PackChain.trace(
            self.scaled(acc, oc),
            self.zero_point,
            DType::Uint8,
            self.range.0,
            self.range.1,
        )
    }

    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i32 {
        Fp32Store::PackChain.apply(
            self.scaled(acc, oc),
            self.zero_point,
            DType::Uint8,
            self.range.0,
            self.range.1,
        )
    }

    fn fp32_run(&self, oc: usize) -> Option<Fp32Run> {
        let (bias, reciprocal) = match &self.bias {
            FloatBiasTerm::None => (0.0, 0.0),
            FloatBiasTerm::FusedReciprocal { bias, reciprocal } => (bias[oc], reciprocal[oc]),
            // `x + t` is `fma(t, 1, x)`: the same single rounding.
            FloatBiasTerm::Precomputed(terms) => (terms[oc], 1.0),
        };
        Some(Fp32Run {
            int_add: 0,
            bias,
            reciprocal,
            multiplier: self.multipliers[oc],
            zero_point: self.zero_point,
            pack_chain: true,
            dtype_range: (0, 255),
            range: self.range,
        })
    }
}

/// oneDNN's int8 post-processing as PyTorch's x86 engine configures it: the int32 accumulator
/// converted to float, times the source scale, times the weight scale (two roundings), plus the
/// float bias, optional ReLU, times the reciprocal of the output scale, plus the zero point in
/// float, clamped to the output range in float, rounded to nearest even.
#[derive(Clone, Debug)]
pub struct FloatPostOpsRequantizer {
    pub source_scale: f32,
    pub weight_scales: Vec<f32>,
    /// Float bias per output channel, if any.
    pub bias: Option<Vec<f32>>,
    pub relu: bool,
    pub output_reciprocal: f32,
    pub zero_point: i32,
    pub range: (i32, i32),
}

impl FloatPostOpsRequantizer {
    /// The float that is clamped and rounded (zero point included).
    #[inline(always)]
    pub fn scaled(&self, acc: i32, oc: usize) -> f32 {
        let mut d = (acc as f32 * self.source_scale) * self.weight_scales[oc];
        if let Some(b) = &self.bias {
            d += b[oc];
        }
        if self.relu {
            d = d.max(0.0);
        }
        d * self.output_reciprocal + self.zero_point as f32
    }
}

impl Requantizer for FloatPostOpsRequantizer {
    type Acc = i32;

    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i32 {
        let d = self.scaled(acc, oc);
        let (lo, hi) = (self.range.0 as f32, self.range.1 as f32);
        let d = if d > lo { d } else { lo };
        let d = if d < hi { d } else { hi };
        cvtps2dq(d)
    }

    fn trace(&self, acc: i32, oc: usize) -> RequantTrace {
        let d = self.scaled(acc, oc);
        RequantTrace {
            value: d as f64,
            unclamped: (d as f64).round_ties_even() as i64,
            output: self.requantize(acc, oc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_chain_and_float_clamp_agree_in_range_and_differ_on_overflow() {
        for s in [-300.0f32, -0.5, 0.5, 1.5, 2.5, 100.4, 254.5, 1e6] {
            let a = Fp32Store::PackChain.apply(s, 3, DType::Uint8, 0, 255);
            let b = Fp32Store::FloatClamp.apply(s, 3, DType::Uint8, 0, 255);
            assert_eq!(a, b, "{s}");
        }
        // Beyond the int32 range cvtps2dq gives i32::MIN: the pack chain stores 0, the float
        // clamp never converts an out-of-range value.
        assert_eq!(Fp32Store::PackChain.apply(3e9, 0, DType::Uint8, 0, 255), 0);
        assert_eq!(
            Fp32Store::FloatClamp.apply(3e9, 0, DType::Uint8, 0, 255),
            255
        );
    }

    #[test]
    fn fbgemm_forum_requantization() {
        let atws = 0.012728f32 * 0.00292f32;
        let m = atws / 0.02091f32;
        let r = FloatBiasFp32Requantizer {
            multipliers: vec![m],
            bias: FloatBiasTerm::Precomputed(vec![0.0]),
            zero_point: 0,
            range: (0, 255),
        };
        assert_eq!(r.requantize(4003, 0), 7);
        assert_eq!(r.requantize(-13861, 0), 0);
    }
}

/// The ONNX reference evaluator's requantization: the int32 accumulator (bias included) times the
/// float32 multiplier, computed in float64 (NumPy promotes int32 x float32 to float64), plus the
/// zero point in float64, clipped to the output type, rounded half to even.
#[derive(Clone, Debug)]
pub struct Float64ProductRequantizer {
    pub multipliers: Vec<f32>,
    /// Int32 bias per output channel (zeros without bias).
    pub bias: Vec<i32>,
    pub zero_point: i32,
    pub range: (i32, i32),
}

impl Float64ProductRequantizer {
    /// The float64 value that is clipped and rounded.
    #[inline(always)]
    pub fn scaled(&self, acc: i32, oc: usize) -> f64 {
        acc.wrapping_add(self.bias[oc]) as f64 * self.multipliers[oc] as f64
            + self.zero_point as f64
    }
}

impl Requantizer for Float64ProductRequantizer {
    type Acc = i32;

    #[inline]
    fn requantize(&self, acc: i32, oc: usize) -> i32 {
        let v = self
            .scaled(acc, oc)
            .clamp(self.range.0 as f64, self.range.1 as f64);
        v.round_ties_even() as i32
    }

    fn trace(&self, acc: i32, oc: usize) -> RequantTrace {
        let v = self.scaled(acc, oc);
        RequantTrace {
            value: v,
            unclamped: v.round_ties_even() as i64,
            output: self.requantize(acc, oc),
        }
    }
}

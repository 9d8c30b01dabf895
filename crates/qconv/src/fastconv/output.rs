//! Output stages: what the fast convolution does with the accumulators of one output pixel.
//!
//! A stage receives the accumulators of consecutive output channels of one pixel (a row of a
//! register tile) and produces the output values, so that requantizers can work a whole row at
//! a time.

use crate::kernels::KernelIsa;
use crate::kernels::scalar::{EstimateOutput, Fp32Run};
use crate::requant::{ExactRequantizer, Requantizer};

/// Output element types (`from_i32` converts an integer already inside the type's range).
pub trait OutputValue: Copy + Default + Send + Sync + EstimateOutput {
    /// Stores a tile of `rows` pixels by `cols` channels, `values[m * stride + n]`, transposed:
    /// pixel run `m = 0 .. rows` of channel `n` goes to `channels[n][at .. at + rows]`.
    #[inline(always)]
    fn store_transposed(
        values: &[Self],
        stride: usize,
        rows: usize,
        cols: usize,
        channels: &mut [&mut [Self]],
        at: usize,
    ) {
        for (n, channel) in channels.iter_mut().enumerate().take(cols) {
            for (m, slot) in channel[at..at + rows].iter_mut().enumerate() {
                *slot = values[m * stride + n];
            }
        }
    }
}

/// Transposes an 8 x 8 block of bytes held as eight little-endian words (word `m` = row `m`):
/// afterwards word `n` holds column `n`.
#[inline(always)]
fn transpose_8x8(w: &mut [u64; 8]) {
    // Swap 4x4 blocks, then 2x2 blocks, then single bytes (the classic three-step exchange).
    for (shift, mask, step) in [
        (32u32, 0x0000_0000_ffff_ffffu64, 4usize),
        (16, 0x0000_ffff_0000_ffff, 2),
        (8, 0x00ff_00ff_00ff_00ff, 1),
    ] {
        for base in (0..8).step_by(2 * step) {
            for i in base..base + step {
                let (a, b) = (w[i], w[i + step]);
                w[i] = (a & mask) | ((b & mask) << shift);
                w[i + step] = ((a >> shift) & mask) | (b & !mask);
            }
        }
    }
}

/// [`OutputValue::store_transposed`] for bytes, eight channels at a time through an 8 x 8 byte
/// transpose.
#[inline(always)]
fn store_bytes_transposed(
    values: &[u8],
    stride: usize,
    rows: usize,
    cols: usize,
    channels: &mut [&mut [u8]],
    at: usize,
) {
    let mut n0 = 0;
    while n0 + 8 <= cols && rows <= 8 {
        let mut w = [0u64; 8];
        for (m, word) in w.iter_mut().enumerate().take(rows) {
            let row: [u8; 8] = values[m * stride + n0..m * stride + n0 + 8]
                .try_into()
                .expect("8 bytes");
            *word = u64::from_le_bytes(row);
        }
        transpose_8x8(&mut w);
        if rows == 8 {
            // A fixed-size copy: one 8-byte store, not a call to memcpy.
            for (n, word) in w.iter().enumerate() {
                let dst: &mut [u8; 8] = (&mut channels[n0 + n][at..at + 8])
                    .try_into()
                    .expect("8 bytes");
                *dst = word.to_le_bytes();
            }
        } else {
            for (n, word) in w.iter().enumerate() {
                channels[n0 + n][at..at + rows].copy_from_slice(&word.to_le_bytes()[..rows]);
            }
        }
        n0 += 8;
    }
    for n in n0..cols {
        for (m, slot) in channels[n][at..at + rows].iter_mut().enumerate() {
            *slot = values[m * stride + n];
        }
    }
}

impl OutputValue for u8 {
    #[inline(always)]
    fn store_transposed(
        values: &[u8],
        stride: usize,
        rows: usize,
        cols: usize,
        channels: &mut [&mut [u8]],
        at: usize,
    ) {
        store_bytes_transposed(values, stride, rows, cols, channels, at)
    }
}

impl OutputValue for i8 {}

impl OutputValue for i32 {}

/// An integer held exactly in a float32 (below 2^24 in magnitude) as int32: adding 1.5 * 2^52
/// in f64 leaves it, two's complement, in the low 32 bits (a conversion that vectorizes,
/// unlike `as i32` with its NaN and range checks).
#[inline(always)]
pub fn exact_f32_to_i32(v: f32) -> i32 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (v as f64 + MAGIC).to_bits() as u32 as i32
}

/// Turns the accumulators of one output pixel into output values.
pub trait OutputStage: Sync {
    type Out: OutputValue;
    /// `out[i]` from `accs[i]`, the accumulator of output channel `oc0 + i`.
    fn row(&self, accs: &[i32], oc0: usize, out: &mut [Self::Out]);
    /// `out[i]` from `accs[i]`, accumulators of output channel `oc` (a run of pixels) held as
    /// float32 integers below 2^24 in magnitude (exact; the planar route's sums).
    /// `isa` is the kernel set the plan runs.
    fn run(&self, isa: KernelIsa, accs: &[f32], oc: usize, out: &mut [Self::Out]);
    /// As [`Self::run`], for int32 accumulators `accs[i] + acc_offset` (wrapping).
    fn run_i32(
        &self,
        isa: KernelIsa,
        accs: &[i32],
        acc_offset: i32,
        oc: usize,
        out: &mut [Self::Out],
    );
}

/// The accumulators themselves.
pub struct Accumulators;

impl OutputStage for Accumulators {
    type Out = i32;

    #[inline(always)]
    fn row(&self, accs: &[i32], _oc0: usize, out: &mut [i32]) {
        out[..accs.len()].copy_from_slice(accs);
    }

    #[inline(always)]
    fn run(&self, _isa: KernelIsa, accs: &[f32], _oc: usize, out: &mut [i32]) {
        for (o, &a) in out.iter_mut().zip(accs) {
            *o = exact_f32_to_i32(a);
        }
    }

    #[inline(always)]
    fn run_i32(&self, _isa: KernelIsa, accs: &[i32], acc_offset: i32, _oc: usize, out: &mut [i32]) {
        for (o, &a) in out.iter_mut().zip(accs) {
            *o = a.wrapping_add(acc_offset);
        }
    }
}

/// Any function of (accumulator, output channel).
pub struct PerElement<F>(pub F);

impl<T: OutputValue, F: Fn(i32, usize) -> T + Sync> OutputStage for PerElement<F> {
    type Out = T;

    #[inline(always)]
    fn row(&self, accs: &[i32], oc0: usize, out: &mut [T]) {
        for (i, (&a, o)) in accs.iter().zip(out.iter_mut()).enumerate() {
            *o = (self.0)(a, oc0 + i);
        }
    }

    #[inline(always)]
    fn run(&self, _isa: KernelIsa, accs: &[f32], oc: usize, out: &mut [T]) {
        for (&a, o) in accs.iter().zip(out.iter_mut()) {
            *o = (self.0)(exact_f32_to_i32(a), oc);
        }
    }

    #[inline(always)]
    fn run_i32(&self, _isa: KernelIsa, accs: &[i32], acc_offset: i32, oc: usize, out: &mut [T]) {
        for (&a, o) in accs.iter().zip(out.iter_mut()) {
            *o = (self.0)(a.wrapping_add(acc_offset), oc);
        }
    }
}

/// A requantizer with an int32 accumulator, element by element.
pub struct Requantized<'a, R, T> {
    pub requantizer: &'a R,
    pub out: std::marker::PhantomData<T>,
}

impl<'a, R, T> Requantized<'a, R, T> {
    /// The stage of `requantizer`.
    pub fn new(requantizer: &'a R) -> Self {
        Requantized {
            requantizer,
            out: std::marker::PhantomData,
        }
    }
}

impl<R: Requantizer<Acc = i32>, T: OutputValue> OutputStage for Requantized<'_, R, T> {
    type Out = T;

    #[inline(always)]
    fn row(&self, accs: &[i32], oc0: usize, out: &mut [T]) {
        self.per_element().row(accs, oc0, out)
    }

    #[inline(always)]
    fn run(&self, isa: KernelIsa, accs: &[f32], oc: usize, out: &mut [T]) {
        if let Some(p) = self.requantizer.fp32_run(oc) {
            let mut ints = [0i32; RUN_CHUNK];
            for (a, o) in accs.chunks(RUN_CHUNK).zip(out.chunks_mut(RUN_CHUNK)) {
                for (i, &v) in ints.iter_mut().zip(a) {
                    *i = exact_f32_to_i32(v);
                }
                fp32_chunk(isa, &p, &ints[..a.len()], o);
            }
            return;
        }
        self.per_element().run(isa, accs, oc, out)
    }

    #[inline(always)]
    fn run_i32(&self, isa: KernelIsa, accs: &[i32], acc_offset: i32, oc: usize, out: &mut [T]) {
        if let Some(mut p) = self.requantizer.fp32_run(oc) {
            p.int_add = p.int_add.wrapping_add(acc_offset);
            for (a, o) in accs.chunks(RUN_CHUNK).zip(out.chunks_mut(RUN_CHUNK)) {
                fp32_chunk(isa, &p, a, o);
            }
            return;
        }
        self.per_element().run_i32(isa, accs, acc_offset, oc, out)
    }
}

impl<R: Requantizer<Acc = i32>, T: OutputValue> Requantized<'_, R, T> {
    /// The requantizer element by element, for schemes without a SIMD run.
    #[inline(always)]
    fn per_element(&self) -> PerElement<impl Fn(i32, usize) -> T + Sync + '_> {
        PerElement(|a, oc| T::from_i32(self.requantizer.requantize(a, oc)))
    }
}

/// Accumulators a float32 requantization run handles at a time (on the stack).
const RUN_CHUNK: usize = 256;

/// Requantizes up to [`RUN_CHUNK`] accumulators with the float32 run kernel into `out`.
#[inline(always)]
fn fp32_chunk<T: OutputValue>(isa: KernelIsa, p: &Fp32Run, accs: &[i32], out: &mut [T]) {
    let mut values = [0i32; RUN_CHUNK];
    let values = &mut values[..accs.len()];
    crate::kernels::requantize_fp32(isa, p, accs, values);
    for (&v, o) in values.iter().zip(out) {
        *o = T::from_i32(v);
    }
}

/// The exact requantizer, a row at a time on its float fast path.
pub struct ExactRequantized<'a, T> {
    pub requantizer: &'a ExactRequantizer,
    pub out: std::marker::PhantomData<T>,
}

impl<'a, T> ExactRequantized<'a, T> {
    /// The stage of `requantizer`.
    pub fn new(requantizer: &'a ExactRequantizer) -> Self {
        ExactRequantized {
            requantizer,
            out: std::marker::PhantomData,
        }
    }
}

impl<T: OutputValue> OutputStage for ExactRequantized<'_, T> {
    type Out = T;

    #[inline(always)]
    fn row(&self, accs: &[i32], oc0: usize, out: &mut [T]) {
        let mut values = [0i32; 64];
        for (j, (accs, out)) in accs.chunks(64).zip(out.chunks_mut(64)).enumerate() {
            let n = accs.len();
            self.requantizer
                .requantize_row(accs, oc0 + 64 * j, &mut values[..n]);
            for (o, &v) in out.iter_mut().zip(&values[..n]) {
                *o = T::from_i32(v);
            }
        }
    }

    #[inline(always)]
    fn run(&self, isa: KernelIsa, accs: &[f32], oc: usize, out: &mut [T]) {
        self.requantizer.requantize_run_f32(isa, accs, 0, oc, out);
    }

    #[inline(always)]
    fn run_i32(&self, isa: KernelIsa, accs: &[i32], acc_offset: i32, oc: usize, out: &mut [T]) {
        self.requantizer
            .requantize_run_f32(isa, accs, acc_offset, oc, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_transpose_matches_the_scalar_store() {
        for (rows, cols) in [(8, 32), (6, 16), (8, 13), (3, 8), (1, 1)] {
            let stride = 32;
            let values: Vec<u8> = (0..8 * stride).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = vec![vec![0u8; 20]; cols];
            let mut slow = vec![vec![0u8; 20]; cols];
            {
                let mut f: Vec<&mut [u8]> = fast.iter_mut().map(|v| v.as_mut_slice()).collect();
                u8::store_transposed(&values, stride, rows, cols, &mut f, 5);
                let mut s: Vec<&mut [u8]> = slow.iter_mut().map(|v| v.as_mut_slice()).collect();
                for (n, channel) in s.iter_mut().enumerate() {
                    for m in 0..rows {
                        channel[5 + m] = values[m * stride + n];
                    }
                }
            }
            assert_eq!(fast, slow, "{rows} x {cols}");
        }
    }
}

//! Planar kernels: one channel's convolution as a sum of shifted copies of its (zero-point-free,
//! padded, phase-split) input plane, `out[j] = sum_t w[t] * src[offsets[t] + j]`, in float32 with
//! fused multiply-adds. Exact while partial sums stay below 2^24 (see
//! [`crate::kernels::scalar::planar_f32`]); four independent vectors per step hide the FMA
//! latency.

use std::arch::x86_64::*;

use crate::kernels::scalar::{EstimateInput, EstimateOutput, F32Estimate};

/// The plain sum (`PAIRS = false`, [`crate::kernels::scalar::planar_f32`]) or the saturating
/// tap pairs ([`crate::kernels::scalar::planar_pairs_f32`]) on 8 lanes.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `out` must hold `len` values, `len % 32 == 0`, and
/// `src` must hold `offsets[t] + len` values for every tap; `weights.len() >= offsets.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn planar_avx2<const PAIRS: bool>(
    src: *const f32,
    offsets: &[usize],
    weights: &[f32],
    out: *mut f32,
    len: usize,
) {
    // SAFETY (whole body): reads src[offsets[t] + j ..][..32] and writes out[j..][..32] for
    // j + 32 <= len, inside the extents the caller guaranteed.
    unsafe {
        let (lo, hi) = (
            _mm256_set1_ps(i16::MIN as f32),
            _mm256_set1_ps(i16::MAX as f32),
        );
        let mut j = 0;
        while j < len {
            let mut acc = [_mm256_setzero_ps(); 4];
            if PAIRS {
                for (o, w) in offsets.chunks(2).zip(weights.chunks(2)) {
                    let (pa, wa) = (src.add(o[0] + j), _mm256_set1_ps(w[0]));
                    // A last odd tap pairs with a zero weight (its product never saturates).
                    let (pb, wb) = match (o, w) {
                        ([_, ob], [_, wb]) => (src.add(ob + j), _mm256_set1_ps(*wb)),
                        _ => (pa, _mm256_setzero_ps()),
                    };
                    for (v, a) in acc.iter_mut().enumerate() {
                        let xa = _mm256_loadu_ps(pa.add(8 * v));
                        let xb = _mm256_loadu_ps(pb.add(8 * v));
                        // Exact: products and their sum are integers below 2^17.
                        let pair = _mm256_fmadd_ps(wb, xb, _mm256_mul_ps(wa, xa));
                        *a = _mm256_add_ps(*a, _mm256_min_ps(_mm256_max_ps(pair, lo), hi));
                    }
                }
            } else {
                for (&offset, &w) in offsets.iter().zip(weights) {
                    let wv = _mm256_set1_ps(w);
                    let p = src.add(offset + j);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8 * v)), *a);
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(j + 8 * v), *a);
            }
            j += 32;
        }
    }
}

/// [`planar_avx2`] on 16 lanes.
///
/// # Safety
/// The CPU must support AVX-512 F. As [`planar_avx2`] with `len % 64 == 0`.
#[target_feature(enable = "avx512f")]
pub unsafe fn planar_avx512<const PAIRS: bool>(
    src: *const f32,
    offsets: &[usize],
    weights: &[f32],
    out: *mut f32,
    len: usize,
) {
    // SAFETY (whole body): reads src[offsets[t] + j ..][..64] and writes out[j..][..64] for
    // j + 64 <= len, inside the extents the caller guaranteed.
    unsafe {
        let (lo, hi) = (
            _mm512_set1_ps(i16::MIN as f32),
            _mm512_set1_ps(i16::MAX as f32),
        );
        let mut j = 0;
        while j < len {
            let mut acc = [_mm512_setzero_ps(); 4];
            if PAIRS {
                for (o, w) in offsets.chunks(2).zip(weights.chunks(2)) {
                    let (pa, wa) = (src.add(o[0] + j), _mm512_set1_ps(w[0]));
                    let (pb, wb) = match (o, w) {
                        ([_, ob], [_, wb]) => (src.add(ob + j), _mm512_set1_ps(*wb)),
                        _ => (pa, _mm512_setzero_ps()),
                    };
                    for (v, a) in acc.iter_mut().enumerate() {
                        let xa = _mm512_loadu_ps(pa.add(16 * v));
                        let xb = _mm512_loadu_ps(pb.add(16 * v));
                        let pair = _mm512_fmadd_ps(wb, xb, _mm512_mul_ps(wa, xa));
                        *a = _mm512_add_ps(*a, _mm512_min_ps(_mm512_max_ps(pair, lo), hi));
                    }
                }
            } else {
                for (&offset, &w) in offsets.iter().zip(weights) {
                    let wv = _mm512_set1_ps(w);
                    let p = src.add(offset + j);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.add(16 * v)), *a);
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(j + 16 * v), *a);
            }
            j += 64;
        }
    }
}

/// [`crate::kernels::scalar::requantize_f32`] on 16 lanes.
///
/// # Safety
/// The CPU must support AVX-512 F and BW. `accs` and `out` must hold `n` values, `unsure`
/// `ceil(n / 64)` words.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn requantize_f32_avx512<A: EstimateInput, T: EstimateOutput>(
    accs: *const A,
    n: usize,
    acc_offset: i32,
    e: &F32Estimate,
    out: *mut T,
    unsure: *mut u64,
) {
    const MAGIC: f32 = 12_582_912.0;
    // SAFETY (whole body): masked loads and stores touch only accs[..n] and out[..n]; words
    // of `unsure` below ceil(n / 64).
    unsafe {
        let (ib, sc, of) = (
            _mm512_set1_ps(e.int_bias),
            _mm512_set1_ps(e.scale),
            _mm512_set1_ps(e.offset),
        );
        let (vlo, vhi) = (_mm512_set1_ps(e.lo as f32), _mm512_set1_ps(e.hi as f32));
        let (thr, magic) = (_mm512_set1_ps(e.threshold), _mm512_set1_ps(MAGIC));
        let bias = _mm512_set1_epi32((MAGIC.to_bits() as i32).wrapping_sub(e.zero_point));
        let offset = _mm512_set1_epi32(acc_offset);
        let abs = _mm512_set1_epi32(0x7fff_ffff);
        let mut word = 0u64;
        let mut i = 0;
        while i < n {
            let mask: __mmask16 = if n - i >= 16 {
                0xffff
            } else {
                (1u16 << (n - i)) - 1
            };
            let a = if A::IS_F32 {
                _mm512_maskz_loadu_ps(mask, accs.add(i) as *const f32)
            } else {
                let a = _mm512_maskz_loadu_epi32(mask, accs.add(i) as *const i32);
                _mm512_cvtepi32_ps(_mm512_add_epi32(a, offset))
            };
            let p = _mm512_mul_ps(_mm512_add_ps(a, ib), sc);
            let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(p, of), vlo), vhi);
            let t = _mm512_add_ps(v, magic);
            let r = _mm512_sub_ps(t, magic);
            let d = _mm512_castsi512_ps(_mm512_and_si512(
                _mm512_castps_si512(_mm512_sub_ps(v, r)),
                abs,
            ));
            let bad = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(mask, d, thr);
            word |= (bad as u64) << (i % 64);
            let q = _mm512_sub_epi32(_mm512_castps_si512(t), bias);
            match size_of::<T>() {
                // In range for the output type: truncation keeps the value.
                1 => _mm512_mask_cvtepi32_storeu_epi8(out.add(i) as *mut i8, mask, q),
                _ => _mm512_mask_storeu_epi32(out.add(i) as *mut i32, mask, q),
            }
            i += 16;
            if i % 64 == 0 || i >= n {
                *unsure.add((i - 1) / 64) = word;
                word = 0;
            }
        }
    }
}

/// [`crate::kernels::scalar::requantize_f32`] on 8 lanes.
///
/// # Safety
/// The CPU must support AVX2. `accs` and `out` must hold `n` values, `unsure` `ceil(n / 64)`
/// words.
#[target_feature(enable = "avx2")]
pub unsafe fn requantize_f32_avx2<A: EstimateInput, T: EstimateOutput>(
    accs: *const A,
    n: usize,
    acc_offset: i32,
    e: &F32Estimate,
    out: *mut T,
    unsure: *mut u64,
) {
    const MAGIC: f32 = 12_582_912.0;
    // SAFETY (whole body): full vectors touch accs[i..i + 8] and out[i..i + 8] with i + 8 <= n;
    // the tail goes through the scalar definition on the remaining slices; words of `unsure`
    // below ceil(n / 64).
    unsafe {
        let words = n.div_ceil(64);
        std::slice::from_raw_parts_mut(unsure, words).fill(0);
        let (ib, sc, of) = (
            _mm256_set1_ps(e.int_bias),
            _mm256_set1_ps(e.scale),
            _mm256_set1_ps(e.offset),
        );
        let (vlo, vhi) = (_mm256_set1_ps(e.lo as f32), _mm256_set1_ps(e.hi as f32));
        let (thr, magic) = (_mm256_set1_ps(e.threshold), _mm256_set1_ps(MAGIC));
        let bias = _mm256_set1_epi32((MAGIC.to_bits() as i32).wrapping_sub(e.zero_point));
        let offset = _mm256_set1_epi32(acc_offset);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        // Gathers the low byte of each 32-bit lane into the low 4 bytes of each 128-bit half.
        let bytes = _mm256_setr_epi8(
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1,
            -1, -1, -1, -1, -1, -1, -1, -1, -1,
        );
        // The flags of the current 64 elements, kept in a register: a read-modify-write of
        // `unsure` in every iteration would chain the iterations through memory.
        let mut word = 0u64;
        let mut i = 0;
        while i + 8 <= n {
            let a = if A::IS_F32 {
                _mm256_loadu_ps(accs.add(i) as *const f32)
            } else {
                let a = _mm256_loadu_si256(accs.add(i) as *const __m256i);
                _mm256_cvtepi32_ps(_mm256_add_epi32(a, offset))
            };
            let p = _mm256_mul_ps(_mm256_add_ps(a, ib), sc);
            // max/min with the constant second: no NaN can occur (finite inputs), and the
            // operand order matches f32::max/min for other values.
            let v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(p, of), vlo), vhi);
            let t = _mm256_add_ps(v, magic);
            let r = _mm256_sub_ps(t, magic);
            let d = _mm256_and_ps(_mm256_sub_ps(v, r), abs);
            let bad = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(d, thr)) as u64;
            word |= bad << (i % 64);
            let q = _mm256_sub_epi32(_mm256_castps_si256(t), bias);
            match size_of::<T>() {
                1 => {
                    let b = _mm256_shuffle_epi8(q, bytes);
                    let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32 as u64;
                    let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(b)) as u32 as u64;
                    (out.add(i) as *mut u64).write_unaligned(lo | hi << 32);
                }
                _ => _mm256_storeu_si256(out.add(i) as *mut __m256i, q),
            }
            i += 8;
            if i % 64 == 0 {
                *unsure.add((i - 1) / 64) = word;
                word = 0;
            }
        }
        if i % 64 != 0 {
            *unsure.add(i / 64) = word;
        }
        if i < n {
            // Fewer than 8 left, all in the last word (i is a multiple of 8).
            let tail = std::slice::from_raw_parts(accs.add(i), n - i);
            let out = std::slice::from_raw_parts_mut(out.add(i), n - i);
            let mut bits = [0u64; 1];
            crate::kernels::scalar::requantize_f32(tail, acc_offset, e, out, &mut bits);
            *unsure.add(i / 64) |= bits[0] << (i % 64);
        }
    }
}

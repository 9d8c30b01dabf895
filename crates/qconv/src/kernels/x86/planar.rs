//! Planar kernels: one channel's convolution as a sum of shifted copies of its (zero-point-free,
//! padded, phase-split) input plane, `out[j] = sum_t w[t] * src[offsets[t] + j]`, in float32 with
//! fused multiply-adds. Exact while partial sums stay below 2^24 (see
//! [`crate::kernels::scalar::planar_f32`]); four independent vectors per step hide the FMA
//! latency.

use std::arch::x86_64::*;

/// # Safety
/// The CPU must support AVX2 and FMA. `out` must hold `len` values, `len % 32 == 0`, and
/// `src` must hold `offsets[t] + len` values for every tap; `weights.len() >= offsets.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn planar_avx2(src: *const f32, offsets: &[usize], weights: &[f32], out: *mut f32, len: usize) {
    // SAFETY (whole body): reads src[offsets[t] + j ..][..32] and writes out[j..][..32] for
    // j + 32 <= len, inside the extents the caller guaranteed.
    unsafe {
        let mut j = 0;
        while j < len {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (&offset, &w) in offsets.iter().zip(weights) {
                let wv = _mm256_set1_ps(w);
                let p = src.add(offset + j);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8 * v)), *a);
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(j + 8 * v), *a);
            }
            j += 32;
        }
    }
}

/// # Safety
/// The CPU must support AVX-512 F. As [`planar_avx2`] with `len % 64 == 0`.
#[target_feature(enable = "avx512f")]
pub unsafe fn planar_avx512(src: *const f32, offsets: &[usize], weights: &[f32], out: *mut f32, len: usize) {
    // SAFETY (whole body): reads src[offsets[t] + j ..][..64] and writes out[j..][..64] for
    // j + 64 <= len, inside the extents the caller guaranteed.
    unsafe {
        let mut j = 0;
        while j < len {
            let mut acc = [_mm512_setzero_ps(); 4];
            for (&offset, &w) in offsets.iter().zip(weights) {
                let wv = _mm512_set1_ps(w);
                let p = src.add(offset + j);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.add(16 * v)), *a);
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(j + 16 * v), *a);
            }
            j += 64;
        }
    }
}

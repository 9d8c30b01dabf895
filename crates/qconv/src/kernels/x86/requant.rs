//! Float32 requantization of the x86 engine models on 8 lanes (see
//! [`crate::kernels::scalar::Fp32Run`]): the same float operations in the same order, and the
//! integer saturations the engines' pack instructions perform, as 32-bit min / max.

use std::arch::x86_64::*;

use crate::kernels::scalar::Fp32Run;

/// # Safety
/// The CPU must support AVX2 and FMA. `accs` and `out` must hold `n` values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn requantize_fp32_avx2(p: &Fp32Run, accs: *const i32, n: usize, out: *mut i32) {
    // SAFETY (whole body): full vectors touch accs[i..i + 8] and out[i..i + 8] with i + 8 <= n;
    // the tail goes through the scalar definition on the remaining slices.
    unsafe {
        let add = _mm256_set1_epi32(p.int_add);
        let (bias, reciprocal) = (_mm256_set1_ps(p.bias), _mm256_set1_ps(p.reciprocal));
        let multiplier = _mm256_set1_ps(p.multiplier);
        let zp = _mm256_set1_epi32(p.zero_point);
        let clamp = |v: __m256i, lo: i32, hi: i32| {
            _mm256_min_epi32(
                _mm256_max_epi32(v, _mm256_set1_epi32(lo)),
                _mm256_set1_epi32(hi),
            )
        };
        let (lo, hi) = p.range;
        let (dlo, dhi) = p.dtype_range;
        let flo = _mm256_set1_ps((lo - p.zero_point) as f32);
        let fhi = _mm256_set1_ps((hi - p.zero_point) as f32);
        let (s16lo, s16hi) = (i16::MIN as i32, i16::MAX as i32);
        let mut i = 0;
        while i + 8 <= n {
            let a = _mm256_add_epi32(_mm256_loadu_si256(accs.add(i) as *const __m256i), add);
            let x = _mm256_fmadd_ps(bias, reciprocal, _mm256_cvtepi32_ps(a));
            let s = _mm256_mul_ps(x, multiplier);
            // cvtps2dq under the default MXCSR: ties to even, 0x80000000 out of range.
            let v = if p.pack_chain {
                let q = clamp(_mm256_cvtps_epi32(s), s16lo, s16hi);
                let q = clamp(_mm256_add_epi32(q, zp), s16lo, s16hi);
                clamp(clamp(q, dlo, dhi), lo, hi)
            } else {
                // max_ps / min_ps return the second operand when the first is NaN.
                let c = _mm256_min_ps(_mm256_max_ps(s, flo), fhi);
                _mm256_add_epi32(_mm256_cvtps_epi32(c), zp)
            };
            _mm256_storeu_si256(out.add(i) as *mut __m256i, v);
            i += 8;
        }
        if i < n {
            let tail = std::slice::from_raw_parts(accs.add(i), n - i);
            let out = std::slice::from_raw_parts_mut(out.add(i), n - i);
            crate::kernels::scalar::requantize_fp32(p, tail, out);
        }
    }
}

//! AVX2 pair-saturating GEMM kernels (packed and indirect): 6 x 16 register tiles.

use std::arch::x86_64::*;

pub const MR: usize = 6;
pub const NR: usize = 16;

/// u8 x s8 with int16 pair saturation: `vpmaddubsw` (pairs of products, saturating), `vpmaddwd`
/// with ones (widening, exact), `vpaddd`, as FBGEMM's and ONNX Runtime's AVX2 kernels do.
///
/// # Safety
/// The CPU must support AVX2. `a` must hold `kq * MR * 4` bytes, `b` `kq * NR * 4`, `c` `MR * NR`.
#[target_feature(enable = "avx2")]
pub unsafe fn gemm_u8s8_pairs(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { gemm_u8s8_pairs_body(kq, a, b, c) }
}

#[inline(always)]
unsafe fn gemm_u8s8_pairs_body(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY (whole body): reads a[q*MR*4 ..], b[q*NR*4 ..] within the caller's extents, writes
    // MR*NR values of c.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for q in 0..kq {
            let bq = b.add(q * NR * 4) as *const __m256i;
            let b0 = _mm256_loadu_si256(bq);
            let b1 = _mm256_loadu_si256(bq.add(1));
            let aq = a.add(q * MR * 4) as *const i32;
            for (m, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(aq.add(m).read_unaligned());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                row[0] = _mm256_add_epi32(row[0], p0);
                row[1] = _mm256_add_epi32(row[1], p1);
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * NR) as *mut __m256i;
            _mm256_storeu_si256(out, row[0]);
            _mm256_storeu_si256(out.add(1), row[1]);
        }
    }
}

/// Indirect u8 x s8 with int16 pair saturation (`vpmaddubsw`, `vpmaddwd` with ones, `vpaddd`):
/// for each tap, row `m` reads `a + offsets[t * MR + m]`.
///
/// # Safety
/// The CPU must support AVX2. For every tap `t` and row `m`, `a + offsets[t * MR + m]` must be
/// valid for `quads * 4` bytes; `offsets` must hold `taps * MR` values, `b`
/// `taps * quads * NR * 4` bytes, `c` `MR * NR` values.
#[target_feature(enable = "avx2")]
pub unsafe fn igemm_u8s8_pairs(
    taps: usize,
    quads: usize,
    a: *const u8,
    offsets: *const usize,
    b: *const i8,
    c: *mut i32,
) {
    // SAFETY (whole body): every read is inside the extents listed in the contract above.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for t in 0..taps {
            let mut rows = [a; MR];
            for (m, row) in rows.iter_mut().enumerate() {
                *row = a.add(*offsets.add(t * MR + m));
            }
            let bt = b.add(t * quads * NR * 4) as *const __m256i;
            for q in 0..quads {
                let b0 = _mm256_loadu_si256(bt.add(2 * q));
                let b1 = _mm256_loadu_si256(bt.add(2 * q + 1));
                for (m, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_epi32((rows[m].add(q * 4) as *const i32).read_unaligned());
                    let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                    let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                    row[0] = _mm256_add_epi32(row[0], p0);
                    row[1] = _mm256_add_epi32(row[1], p1);
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * NR) as *mut __m256i;
            _mm256_storeu_si256(out, row[0]);
            _mm256_storeu_si256(out.add(1), row[1]);
        }
    }
}

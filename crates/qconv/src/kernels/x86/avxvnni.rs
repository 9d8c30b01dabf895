//! AVX-VNNI kernels (256-bit `vpdpbusd`): 6 x 16 register tiles.

use std::arch::x86_64::*;

pub const MR: usize = 6;
pub const NR: usize = 16;

/// Exact u8 x s8: `vpdpbusd` of a broadcast quad of activations with a quad-packed weight row.
///
/// # Safety
/// The CPU must support AVX2 and AVX-VNNI. `a` must hold `kq * MR * 4` bytes, `b` `kq * NR * 4`,
/// `c` `MR * NR` values.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn gemm_u8s8(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { gemm_u8s8_body(kq, a, b, c) }
}

#[inline(always)]
unsafe fn gemm_u8s8_body(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY (whole body): reads a[q*MR*4 ..], b[q*NR*4 ..] within the caller's extents, writes
    // MR*NR values of c.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for q in 0..kq {
            let bq = b.add(q * NR * 4) as *const __m256i;
            let b0 = _mm256_loadu_si256(bq);
            let b1 = _mm256_loadu_si256(bq.add(1));
            let aq = a.add(q * MR * 4) as *const i32;
            for (m, row) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(aq.add(m).read_unaligned());
                row[0] = _mm256_dpbusd_avx_epi32(row[0], av, b0);
                row[1] = _mm256_dpbusd_avx_epi32(row[1], av, b1);
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * NR) as *mut __m256i;
            _mm256_storeu_si256(out, row[0]);
            _mm256_storeu_si256(out.add(1), row[1]);
        }
    }
}

/// Register tile of the indirect kernel: 6 rows (one pointer each) by 16 columns.
pub const IMR: usize = 6;
pub const INR: usize = 16;

/// Indirect exact u8 x s8: for each tap, row `m` reads `a + offsets[t * IMR + m]`.
///
/// # Safety
/// The CPU must support AVX2 and AVX-VNNI. For every tap `t` and row `m`,
/// `a + offsets[t * IMR + m]` must be valid for `quads * 4` bytes; `offsets` must hold
/// `taps * IMR` values, `b` `taps * quads * INR * 4` bytes, `c` `IMR * INR` values.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn igemm_u8s8(
    taps: usize,
    quads: usize,
    a: *const u8,
    offsets: *const usize,
    b: *const i8,
    c: *mut i32,
) {
    // SAFETY (whole body): every read is inside the extents listed in the contract above.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; IMR];
        for t in 0..taps {
            let mut rows = [a; IMR];
            for (m, row) in rows.iter_mut().enumerate() {
                *row = a.add(*offsets.add(t * IMR + m));
            }
            let bt = b.add(t * quads * INR * 4) as *const __m256i;
            for q in 0..quads {
                let b0 = _mm256_loadu_si256(bt.add(2 * q));
                let b1 = _mm256_loadu_si256(bt.add(2 * q + 1));
                for (m, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_epi32((rows[m].add(q * 4) as *const i32).read_unaligned());
                    row[0] = _mm256_dpbusd_avx_epi32(row[0], av, b0);
                    row[1] = _mm256_dpbusd_avx_epi32(row[1], av, b1);
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * INR) as *mut __m256i;
            _mm256_storeu_si256(out, row[0]);
            _mm256_storeu_si256(out.add(1), row[1]);
        }
    }
}

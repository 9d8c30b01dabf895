//! AVX-512-VNNI kernels (512-bit `vpdpbusd`): 12 x 32 register tiles (24 accumulators).

use std::arch::x86_64::*;

pub const MR: usize = 12;
pub const NR: usize = 32;

/// Exact u8 x s8: `vpdpbusd` of a broadcast quad of activations with a quad-packed weight row.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI. `a` must hold `kq * MR * 4` bytes, `b`
/// `kq * NR * 4`, `c` `MR * NR` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn gemm_u8s8(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { gemm_u8s8_body(kq, a, b, c) }
}

#[inline(always)]
unsafe fn gemm_u8s8_body(kq: usize, a: *const u8, b: *const i8, c: *mut i32) {
    // SAFETY (whole body): reads a[q*MR*4 ..], b[q*NR*4 ..] within the caller's extents, writes
    // MR*NR values of c.
    unsafe {
        let mut acc = [[_mm512_setzero_si512(); 2]; MR];
        for q in 0..kq {
            let bq = b.add(q * NR * 4) as *const __m512i;
            let b0 = _mm512_loadu_si512(bq);
            let b1 = _mm512_loadu_si512(bq.add(1));
            let aq = a.add(q * MR * 4) as *const i32;
            for (m, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(aq.add(m).read_unaligned());
                row[0] = _mm512_dpbusd_epi32(row[0], av, b0);
                row[1] = _mm512_dpbusd_epi32(row[1], av, b1);
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * NR) as *mut __m512i;
            _mm512_storeu_si512(out, row[0]);
            _mm512_storeu_si512(out.add(1), row[1]);
        }
    }
}

/// Register tile of the indirect kernel: 8 rows (one pointer each) by 32 columns.
pub const IMR: usize = 8;
pub const INR: usize = 32;

/// Indirect exact u8 x s8: for each tap, row `m` reads `a + offsets[t * IMR + m]`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI. For every tap `t` and row `m`,
/// `a + offsets[t * IMR + m]` must be valid for `quads * 4` bytes; `offsets` must hold
/// `taps * IMR` values, `b` `taps * quads * INR * 4` bytes, `c` `IMR * INR` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
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
        let mut acc = [[_mm512_setzero_si512(); 2]; IMR];
        for t in 0..taps {
            let mut rows = [a; IMR];
            for (m, row) in rows.iter_mut().enumerate() {
                *row = a.add(*offsets.add(t * IMR + m));
            }
            let bt = b.add(t * quads * INR * 4) as *const __m512i;
            for q in 0..quads {
                let b0 = _mm512_loadu_si512(bt.add(2 * q));
                let b1 = _mm512_loadu_si512(bt.add(2 * q + 1));
                for (m, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi32((rows[m].add(q * 4) as *const i32).read_unaligned());
                    row[0] = _mm512_dpbusd_epi32(row[0], av, b0);
                    row[1] = _mm512_dpbusd_epi32(row[1], av, b1);
                }
            }
        }
        for (m, row) in acc.iter().enumerate() {
            let out = c.add(m * INR) as *mut __m512i;
            _mm512_storeu_si512(out, row[0]);
            _mm512_storeu_si512(out.add(1), row[1]);
        }
    }
}

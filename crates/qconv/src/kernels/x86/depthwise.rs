//! Depthwise kernels: for one output pixel, `acc[c] = sum_t x_t[c] * w_t[c]` over the taps, on
//! i16 activations (zero point subtracted) and i16 weights, exactly. Two taps at a time are
//! interleaved (`vpunpcklwd` / `vpunpckhwd`) so that one `vpmaddwd` (or `vpdpwssd`) multiplies
//! and adds both; the weights are pre-interleaved in the same order ([`interleave_weights`]).

use std::arch::x86_64::*;

/// Channels per block: 16 (256-bit) or 32 (512-bit).
pub fn block(avx512: bool) -> usize {
    if avx512 { 32 } else { 16 }
}

/// The channel order of the accumulator lanes: first the `lo` half, then the `hi` half; within
/// each 128-bit lane `unpacklo` takes channels 0-3 and `unpackhi` 4-7.
pub fn lane_channels(block: usize) -> Vec<usize> {
    let lanes = block / 8;
    let lo = (0..lanes).flat_map(|l| 8 * l..8 * l + 4);
    let hi = (0..lanes).flat_map(|l| 8 * l + 4..8 * l + 8);
    lo.chain(hi).collect()
}

/// Interleaves the weights of taps `t0`, `t1` (each `cp` channels, `cp` a multiple of `block`)
/// as the kernel consumes them: per channel block, the `lo` pairs then the `hi` pairs.
pub fn interleave_weights(w0: &[i16], w1: &[i16], block: usize, out: &mut Vec<i16>) {
    let order = lane_channels(block);
    for base in (0..w0.len()).step_by(block) {
        for &c in &order {
            out.push(w0[base + c]);
            out.push(w1[base + c]);
        }
    }
}

/// # Safety
/// The CPU must support AVX2. Every row of `rows` must hold `cp` values, `w` must hold
/// `rows.len() / 2 * cp * 2` values (rows come in pairs), `acc` `cp` values; `cp % 16 == 0`.
#[target_feature(enable = "avx2")]
pub unsafe fn pixel_avx2(rows: &[&[i16]], w: &[i16], cp: usize, acc: &mut [i32]) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { pixel_256::<false>(rows, w, cp, acc) }
}

/// # Safety
/// As [`pixel_avx2`], and the CPU must support AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn pixel_avxvnni(rows: &[&[i16]], w: &[i16], cp: usize, acc: &mut [i32]) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { pixel_256::<true>(rows, w, cp, acc) }
}

#[inline(always)]
unsafe fn pixel_256<const VNNI: bool>(rows: &[&[i16]], w: &[i16], cp: usize, acc: &mut [i32]) {
    // SAFETY (whole body): loads row[pair][c .. c + 16] for c < cp, w[(pair * cp + c) * 2 ..][..32]
    // and stores acc[c .. c + 16], all inside the extents the caller guaranteed.
    unsafe {
        for c in (0..cp).step_by(16) {
            let mut lo = _mm256_setzero_si256();
            let mut hi = _mm256_setzero_si256();
            for (pair, taps) in rows.chunks_exact(2).enumerate() {
                let x0 = _mm256_loadu_si256(taps[0].as_ptr().add(c) as *const __m256i);
                let x1 = _mm256_loadu_si256(taps[1].as_ptr().add(c) as *const __m256i);
                let wp = w.as_ptr().add((pair * cp + c) * 2) as *const __m256i;
                let (w_lo, w_hi) = (_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1)));
                let (i_lo, i_hi) = (_mm256_unpacklo_epi16(x0, x1), _mm256_unpackhi_epi16(x0, x1));
                if VNNI {
                    lo = _mm256_dpwssd_avx_epi32(lo, i_lo, w_lo);
                    hi = _mm256_dpwssd_avx_epi32(hi, i_hi, w_hi);
                } else {
                    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(i_lo, w_lo));
                    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(i_hi, w_hi));
                }
            }
            let out = acc.as_mut_ptr().add(c) as *mut __m256i;
            _mm256_storeu_si256(out, lo);
            _mm256_storeu_si256(out.add(1), hi);
        }
    }
}

/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI. As [`pixel_avx2`] with `cp % 32 == 0`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn pixel_avx512vnni(rows: &[&[i16]], w: &[i16], cp: usize, acc: &mut [i32]) {
    // SAFETY (whole body): loads row[pair][c .. c + 32], w[(pair * cp + c) * 2 ..][..64] and
    // stores acc[c .. c + 32], inside the extents the caller guaranteed.
    unsafe {
        for c in (0..cp).step_by(32) {
            let mut lo = _mm512_setzero_si512();
            let mut hi = _mm512_setzero_si512();
            for (pair, taps) in rows.chunks_exact(2).enumerate() {
                let x0 = _mm512_loadu_si512(taps[0].as_ptr().add(c) as *const __m512i);
                let x1 = _mm512_loadu_si512(taps[1].as_ptr().add(c) as *const __m512i);
                let wp = w.as_ptr().add((pair * cp + c) * 2) as *const __m512i;
                let (w_lo, w_hi) = (_mm512_loadu_si512(wp), _mm512_loadu_si512(wp.add(1)));
                lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(x0, x1), w_lo);
                hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(x0, x1), w_hi);
            }
            let out = acc.as_mut_ptr().add(c) as *mut __m512i;
            _mm512_storeu_si512(out, lo);
            _mm512_storeu_si512(out.add(1), hi);
        }
    }
}

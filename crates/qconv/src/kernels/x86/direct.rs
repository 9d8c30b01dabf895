//! Direct kernels: output channels by output pixels, reading activations in place from a
//! channel-interleaved input (`[channel group][pixel][4 u8]` or `[channel pair][pixel][2 i16]`).
//!
//! One reduction step is one tap of one channel quad (or pair): `steps[s]` is where that step's
//! activations for pixel 0 of the tile start, the tile's pixels follow contiguously. The weights
//! of a step are `MR` quads (pairs) in a row, broadcast one output channel at a time; each
//! accumulator vector holds consecutive pixels of one output channel, so rows of the result are
//! runs of an NCHW output plane. Row `m` of the result is stored at `acc + m * ldc`.

use std::arch::x86_64::*;

/// AVX-512-VNNI tile: 8 output channels by 48 pixels (24 accumulators).
pub const AVX512_TILE: (usize, usize) = (8, 48);
/// AVX-VNNI tile: 4 output channels by 24 pixels (12 accumulators).
pub const AVXVNNI_TILE: (usize, usize) = (4, 24);
/// AVX2 tiles: 4 output channels by 16 pixels (pairs of u8 x s8 quads), 5 by 16 (i16 pairs).
pub const AVX2_PAIRS_TILE: (usize, usize) = (4, 16);
pub const AVX2_I16_TILE: (usize, usize) = (5, 16);

/// Exact u8 x s8 with 512-bit `vpdpbusd`, on `16 * NZ` pixels (`NZ` of 1 to 3: the full tile
/// is 48 wide; narrower ones finish a grid without computing pixels past its end).
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI. For every step `s < steps.len()`,
/// `b + steps[s]` must be valid for `16 * NZ * 4` bytes; `w` must hold `steps.len() * 8 * 4`
/// bytes, `acc` `7 * ldc + 16 * NZ` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn u8s8_avx512<const NZ: usize>(
    steps: &[usize],
    b: *const u8,
    w: *const i8,
    acc: *mut i32,
    ldc: usize,
) {
    // SAFETY (whole body): reads and writes stay inside the extents of the contract above.
    unsafe {
        let mut c = [[_mm512_setzero_si512(); NZ]; 8];
        for (s, &offset) in steps.iter().enumerate() {
            let bp = b.add(offset) as *const __m512i;
            let bv: [__m512i; NZ] = std::array::from_fn(|j| _mm512_loadu_si512(bp.add(j)));
            let wp = w.add(s * 32) as *const i32;
            for (m, row) in c.iter_mut().enumerate() {
                let wv = _mm512_set1_epi32(wp.add(m).read_unaligned());
                for (a, &bj) in row.iter_mut().zip(&bv) {
                    *a = _mm512_dpbusd_epi32(*a, bj, wv);
                }
            }
        }
        for (m, row) in c.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                _mm512_storeu_si512(acc.add(m * ldc + 16 * j) as *mut __m512i, *a);
            }
        }
    }
}

/// The register tile of the 256-bit direct kernels: `MR` output channels by `NZ` vectors of 8
/// pixels. `update(acc, activations, weights)` is the kernel's arithmetic on one vector of one
/// row; the weights of a step are `MR` 32-bit words (a quad of u8 or a pair of i16 each).
///
/// # Safety
/// For every step `s`, `b + steps[s]` must be valid for `NZ` 32-byte vectors; `w` must hold
/// `steps.len() * MR` words and `acc` `(MR - 1) * ldc + 8 * NZ` values. The caller's target
/// features must cover `update` and AVX2.
#[inline(always)]
unsafe fn tile_256<T, const MR: usize, const NZ: usize>(
    steps: &[usize],
    b: *const T,
    w: *const i32,
    acc: *mut i32,
    ldc: usize,
    update: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) {
    // SAFETY (whole body): reads and writes stay inside the extents of the contract above.
    unsafe {
        let mut c = [[_mm256_setzero_si256(); NZ]; MR];
        for (s, &offset) in steps.iter().enumerate() {
            let bp = b.add(offset) as *const __m256i;
            let bv: [__m256i; NZ] = std::array::from_fn(|j| _mm256_loadu_si256(bp.add(j)));
            let wp = w.add(s * MR);
            for (m, row) in c.iter_mut().enumerate() {
                let wv = _mm256_set1_epi32(wp.add(m).read_unaligned());
                for (a, &bj) in row.iter_mut().zip(&bv) {
                    *a = update(*a, bj, wv);
                }
            }
        }
        for (m, row) in c.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                _mm256_storeu_si256(acc.add(m * ldc + 8 * j) as *mut __m256i, *a);
            }
        }
    }
}

/// Exact u8 x s8 with 256-bit AVX-VNNI `vpdpbusd`.
///
/// # Safety
/// The CPU must support AVX2 and AVX-VNNI. For every step `s`, `b + steps[s]` must be valid for
/// `24 * 4` bytes; `w` must hold `steps.len() * 4 * 4` bytes, `acc` `3 * ldc + 24` values.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn u8s8_avxvnni(steps: &[usize], b: *const u8, w: *const i8, acc: *mut i32, ldc: usize) {
    // SAFETY: the contract above is `tile_256`'s for a 4 x 3 tile; AVX-VNNI enabled here.
    unsafe {
        tile_256::<u8, 4, 3>(steps, b, w as *const i32, acc, ldc, |a, x, w| {
            _mm256_dpbusd_avx_epi32(a, x, w)
        })
    }
}

/// u8 x s8 with each pair of products summed in saturating int16 (`vpmaddubsw`), then pairs of
/// pairs in int32 (`vpmaddwd` by ones): FBGEMM's and ONNX Runtime's AVX2 arithmetic.
///
/// # Safety
/// The CPU must support AVX2. For every step `s`, `b + steps[s]` must be valid for `16 * 4`
/// bytes; `w` must hold `steps.len() * 4 * 4` bytes, `acc` `3 * ldc + 16` values.
#[target_feature(enable = "avx2")]
pub unsafe fn u8s8_pairs_avx2(
    steps: &[usize],
    b: *const u8,
    w: *const i8,
    acc: *mut i32,
    ldc: usize,
) {
    // SAFETY: the contract above is `tile_256`'s for a 4 x 2 tile; AVX2 enabled here.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        tile_256::<u8, 4, 2>(steps, b, w as *const i32, acc, ldc, |a, x, w| {
            _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones))
        })
    }
}

/// Exact i16 x i16 (`vpmaddwd`) on pair-interleaved activations and weights.
///
/// # Safety
/// The CPU must support AVX2. For every step `s`, `b + steps[s]` must be valid for `16 * 2`
/// values; `w` must hold `steps.len() * 5 * 2` values, `acc` `4 * ldc + 16` values.
#[target_feature(enable = "avx2")]
pub unsafe fn i16_avx2(steps: &[usize], b: *const i16, w: *const i16, acc: *mut i32, ldc: usize) {
    // SAFETY: the contract above is `tile_256`'s for a 5 x 2 tile; AVX2 enabled here. Ten
    // accumulators, two activation vectors, a broadcast and a product fit the 16 registers.
    unsafe {
        tile_256::<i16, 5, 2>(steps, b, w as *const i32, acc, ldc, |a, x, w| {
            _mm256_add_epi32(a, _mm256_madd_epi16(x, w))
        })
    }
}

/// Interleaves four byte rows: `out[4 j + i] = rows[i][j]` for `j < n`.
///
/// # Safety
/// The CPU must support AVX2. Each row must hold `n` bytes and `out` `4 n`.
#[target_feature(enable = "avx2")]
pub unsafe fn interleave_u8x4(rows: [*const u8; 4], n: usize, out: *mut u8) {
    // SAFETY (whole body): 16-byte loads at j + 16 <= n and 64-byte stores at 4 j + 64 <= 4 n;
    // the tail is written element by element inside the same extents.
    unsafe {
        let mut j = 0;
        while j + 16 <= n {
            let [a, b, c, d] = rows.map(|r| _mm_loadu_si128(r.add(j) as *const __m128i));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let o = out.add(4 * j) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
            j += 16;
        }
        while j < n {
            for (i, r) in rows.iter().enumerate() {
                *out.add(4 * j + i) = *r.add(j);
            }
            j += 1;
        }
    }
}

/// Interleaves two i16 rows: `out[2 j + i] = rows[i][j]` for `j < n`.
///
/// # Safety
/// The CPU must support AVX2. Each row must hold `n` values and `out` `2 n`.
#[target_feature(enable = "avx2")]
pub unsafe fn interleave_i16x2(rows: [*const i16; 2], n: usize, out: *mut i16) {
    // SAFETY (whole body): 8-value loads at j + 8 <= n and 16-value stores at 2 j + 16 <= 2 n;
    // the tail is written element by element inside the same extents.
    unsafe {
        let mut j = 0;
        while j + 8 <= n {
            let a = _mm_loadu_si128(rows[0].add(j) as *const __m128i);
            let b = _mm_loadu_si128(rows[1].add(j) as *const __m128i);
            let o = out.add(2 * j) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(a, b));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(a, b));
            j += 8;
        }
        while j < n {
            *out.add(2 * j) = *rows[0].add(j);
            *out.add(2 * j + 1) = *rows[1].add(j);
            j += 1;
        }
    }
}

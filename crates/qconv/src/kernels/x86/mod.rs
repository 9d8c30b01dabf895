//! x86-64 SIMD kernels. Each public function is safe: it takes the [`KernelIsa`] that proves the
//! CPU supports its instructions, checks the slice lengths its `unsafe` body relies on, and calls
//! a `#[target_feature]` function that wraps an `#[inline(always)]` body.

mod avx2;
mod avx512vnni;
mod avxvnni;
pub mod depthwise;

use super::KernelIsa;

/// Register tile `(mr, nr)` of the exact u8 x s8 kernel of `isa`, if it has one.
pub fn u8s8_tile(isa: KernelIsa) -> Option<(usize, usize)> {
    if isa.is_avx512_vnni() {
        Some((avx512vnni::MR, avx512vnni::NR))
    } else if isa.is_avx_vnni() {
        Some((avxvnni::MR, avxvnni::NR))
    } else {
        None
    }
}

/// Register tile of the AVX2 kernels (pairs and i16).
pub const AVX2_TILE: (usize, usize) = (avx2::MR, avx2::NR);

fn check_panels(mr: usize, nr: usize, steps: usize, width: usize, a: usize, b: usize, c: usize) {
    assert!(a >= steps * mr * width, "A panel too short");
    assert!(b >= steps * nr * width, "B panel too short");
    assert!(c >= mr * nr, "C tile too short");
}

/// Exact u8 x s8 tile product on quad-packed panels with `isa`'s VNNI kernel (see
/// [`u8s8_tile`] for the tile size). Panics if `isa` has no such kernel or a slice is too short.
pub fn gemm_u8s8(isa: KernelIsa, kq: usize, a: &[u8], b: &[i8], c: &mut [i32]) {
    let (mr, nr) = u8s8_tile(isa).expect("a VNNI kernel set");
    check_panels(mr, nr, kq, 4, a.len(), b.len(), c.len());
    if isa.is_avx512_vnni() {
        // SAFETY: `isa` was produced by CPU detection (see KernelIsa), so AVX-512 F/BW/VNNI are
        // present; the panel lengths were checked above against the kernel's fixed tile.
        unsafe { avx512vnni::gemm_u8s8(kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
    } else {
        // SAFETY: as above, for AVX2 + AVX-VNNI.
        unsafe { avxvnni::gemm_u8s8(kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
    }
}

/// u8 x s8 tile product summing each pair of products in saturating int16 (`vpmaddubsw`), on
/// quad-packed panels of [`AVX2_TILE`]. Panics unless `isa` has AVX2.
pub fn gemm_u8s8_pairs(isa: KernelIsa, kq: usize, a: &[u8], b: &[i8], c: &mut [i32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let (mr, nr) = AVX2_TILE;
    check_panels(mr, nr, kq, 4, a.len(), b.len(), c.len());
    // SAFETY: every non-scalar KernelIsa implies AVX2 and FMA were detected; lengths checked.
    unsafe { avx2::gemm_u8s8_pairs(kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
}

/// Exact i16 x i16 tile product on pair-packed panels of [`AVX2_TILE`]. Panics unless `isa` has
/// AVX2.
pub fn gemm_i16(isa: KernelIsa, kp: usize, a: &[i16], b: &[i16], c: &mut [i32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let (mr, nr) = AVX2_TILE;
    check_panels(mr, nr, kp, 2, a.len(), b.len(), c.len());
    // SAFETY: every non-scalar KernelIsa implies AVX2 was detected; lengths checked above.
    unsafe { avx2::gemm_i16(kp, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
}

/// The depthwise channel block of `isa` (a multiple the channel count is padded to).
pub fn depthwise_block(isa: KernelIsa) -> usize {
    depthwise::block(isa.is_avx512_vnni())
}

/// One output pixel of the depthwise kernel: `acc[lane] = sum over tap pairs` with the weights
/// interleaved by [`depthwise::interleave_weights`] (accumulator lanes are in
/// [`depthwise::lane_channels`] order within each block). `rows` holds an even number of
/// `cp`-channel rows. Panics unless `isa` has AVX2 or a length is wrong.
pub fn depthwise_pixel(isa: KernelIsa, rows: &[&[i16]], w: &[i16], cp: usize, acc: &mut [i32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    assert!(cp % depthwise_block(isa) == 0 && rows.len() % 2 == 0);
    assert!(rows.iter().all(|r| r.len() >= cp) && acc.len() >= cp);
    assert!(w.len() >= rows.len() / 2 * cp * 2);
    if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW/VNNI detected (KernelIsa); lengths checked above.
        unsafe { depthwise::pixel_avx512vnni(rows, w, cp, acc) }
    } else if isa.is_avx_vnni() {
        // SAFETY: AVX2 + AVX-VNNI detected; lengths checked above.
        unsafe { depthwise::pixel_avxvnni(rows, w, cp, acc) }
    } else {
        // SAFETY: AVX2 detected; lengths checked above.
        unsafe { depthwise::pixel_avx2(rows, w, cp, acc) }
    }
}

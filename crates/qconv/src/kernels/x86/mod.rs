//! x86-64 SIMD kernels. Each public function is safe: it takes the [`KernelIsa`] that proves the
//! CPU supports its instructions, checks the slice lengths its `unsafe` body relies on, and calls
//! a `#[target_feature]` function that wraps an `#[inline(always)]` body.

mod avx2;
mod avx512vnni;
mod avxvnni;
mod direct;
mod planar;

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

/// Planar convolution (see [`super::scalar::planar_f32`]) with `isa`'s widest float vectors.
/// Panics unless `isa` has AVX2, `out.len()` is a multiple of [`super::PLANAR_BLOCK`], and every
/// tap reads inside `src`.
pub fn planar_f32(isa: KernelIsa, src: &[f32], offsets: &[usize], weights: &[f32], out: &mut [f32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let len = out.len();
    assert!(len % super::PLANAR_BLOCK == 0, "output not a whole number of blocks");
    assert!(weights.len() >= offsets.len(), "a weight per tap");
    assert!(offsets.iter().all(|&o| o + len <= src.len()), "tap outside the plane");
    let (s, o) = (src.as_ptr(), out.as_mut_ptr());
    if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F detected (KernelIsa); extents and block multiple checked above.
        unsafe { planar::planar_avx512(s, offsets, weights, o, len) }
    } else {
        // SAFETY: AVX2 and FMA detected (every non-scalar KernelIsa); extents checked above.
        unsafe { planar::planar_avx2(s, offsets, weights, o, len) }
    }
}

/// The direct kernel tile `(mr, tw)` of `isa` for exact u8 x s8 (VNNI sets only), saturating
/// u8 x s8 pairs, or exact i16.
pub fn direct_tile(isa: KernelIsa, kind: super::DirectKind) -> Option<(usize, usize)> {
    use super::DirectKind::*;
    match kind {
        U8S8 if isa.is_avx512_vnni() => Some(direct::AVX512_TILE),
        U8S8 if isa.is_avx_vnni() => Some(direct::AVXVNNI_TILE),
        U8S8 => None,
        U8S8Pairs if isa.has_avx2() => Some(direct::AVX2_PAIRS_TILE),
        I16 if isa.has_avx2() => Some(direct::AVX2_I16_TILE),
        _ => None,
    }
}

/// Checks every extent a direct kernel reads and writes.
fn check_direct(tile: (usize, usize), width: usize, steps: &[usize], b: usize, w: usize, acc: usize) {
    let (mr, tw) = tile;
    let span = tw * width;
    assert!(steps.iter().all(|&s| s + span <= b), "step outside B");
    assert!(w >= steps.len() * mr * width, "weight panel too short");
    assert!(acc >= mr * tw, "accumulator tile too short");
}

/// Direct u8 x s8 tile (see [`super::scalar::direct_u8s8`]) with `isa`'s kernel. Panics if
/// `isa` has none for this kind or an extent is wrong.
pub fn direct_u8s8(isa: KernelIsa, pairs: bool, steps: &[usize], b: &[u8], w: &[i8], acc: &mut [i32]) {
    let kind = if pairs { super::DirectKind::U8S8Pairs } else { super::DirectKind::U8S8 };
    let tile = direct_tile(isa, kind).expect("a direct kernel for this kernel set");
    check_direct(tile, 4, steps, b.len(), w.len(), acc.len());
    let (b, w, acc) = (b.as_ptr(), w.as_ptr(), acc.as_mut_ptr());
    if pairs {
        // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
        unsafe { direct::u8s8_pairs_avx2(steps, b, w, acc) }
    } else if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW/VNNI detected; every extent checked above.
        unsafe { direct::u8s8_avx512(steps, b, w, acc) }
    } else {
        // SAFETY: AVX2 + AVX-VNNI detected; every extent checked above.
        unsafe { direct::u8s8_avxvnni(steps, b, w, acc) }
    }
}

/// Direct i16 tile (see [`super::scalar::direct_i16`]) on AVX2. Panics unless `isa` has AVX2
/// or if an extent is wrong.
pub fn direct_i16(isa: KernelIsa, steps: &[usize], b: &[i16], w: &[i16], acc: &mut [i32]) {
    let tile = direct_tile(isa, super::DirectKind::I16).expect("an AVX2 kernel set");
    check_direct(tile, 2, steps, b.len(), w.len(), acc.len());
    // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
    unsafe { direct::i16_avx2(steps, b.as_ptr(), w.as_ptr(), acc.as_mut_ptr()) }
}

/// Four byte rows interleaved (see [`super::scalar::interleave`]). Panics unless `isa` has AVX2
/// or `out` is shorter than four times the shortest row.
pub fn interleave_u8x4(isa: KernelIsa, rows: [&[u8]; 4], out: &mut [u8]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let n = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    assert!(out.len() >= 4 * n, "output too short");
    // SAFETY: AVX2 detected; every row holds n bytes and out 4 n (checked above).
    unsafe { direct::interleave_u8x4(rows.map(|r| r.as_ptr()), n, out.as_mut_ptr()) }
}

/// Two i16 rows interleaved. Panics unless `isa` has AVX2 or `out` is shorter than twice the
/// shorter row.
pub fn interleave_i16x2(isa: KernelIsa, rows: [&[i16]; 2], out: &mut [i16]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let n = rows[0].len().min(rows[1].len());
    assert!(out.len() >= 2 * n, "output too short");
    // SAFETY: AVX2 detected; both rows hold n values and out 2 n (checked above).
    unsafe { direct::interleave_i16x2(rows.map(|r| r.as_ptr()), n, out.as_mut_ptr()) }
}

/// [`super::scalar::requantize_f32`] with `isa`'s vectors. Panics unless `isa` has AVX2.
pub fn requantize_f32<A: super::scalar::EstimateInput, T: super::scalar::EstimateOutput>(
    isa: KernelIsa,
    accs: &[A],
    acc_offset: i32,
    e: &super::scalar::F32Estimate,
    out: &mut [T],
) -> u64 {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    assert!(matches!(size_of::<T>(), 1 | 4), "byte or int32 outputs");
    let n = accs.len().min(64);
    assert!(out.len() >= n, "output too short");
    let (a, o) = (accs.as_ptr(), out.as_mut_ptr());
    if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW detected (KernelIsa); n <= 64 values of both slices.
        unsafe { planar::requantize_f32_avx512(a, n, acc_offset, e, o) }
    } else {
        // SAFETY: AVX2 detected; n <= 64 values of both slices.
        unsafe { planar::requantize_f32_avx2(a, n, acc_offset, e, o) }
    }
}

/// Register tile `(mr, nr)` of `isa`'s indirect kernel for `family`: u8 x s8 exact (VNNI sets
/// only), u8 x s8 pairs, or i16 (AVX2 sets).
pub fn indirect_tile(isa: KernelIsa, u8s8_exact: bool) -> Option<(usize, usize)> {
    if u8s8_exact {
        if isa.is_avx512_vnni() {
            Some((avx512vnni::IMR, avx512vnni::INR))
        } else if isa.is_avx_vnni() {
            Some((avxvnni::IMR, avxvnni::INR))
        } else {
            None
        }
    } else if isa.has_avx2() {
        Some((avx2::MR, avx2::NR))
    } else {
        None
    }
}

/// Checks the extents an indirect kernel reads: every row start plus `span` values inside `a`.
fn check_indirect(mr: usize, nr: usize, taps: usize, steps: usize, width: usize, a: usize, offsets: &[usize], b: usize, c: usize) {
    assert!(offsets.len() >= taps * mr, "offsets too short");
    let span = steps * width;
    assert!(offsets[..taps * mr].iter().all(|&o| o + span <= a), "row outside A");
    assert!(b >= taps * steps * nr * width, "B panel too short");
    assert!(c >= mr * nr, "C tile too short");
}

/// Indirect u8 x s8 tile product (see [`super::scalar::igemm_u8s8`]): exact with `isa`'s VNNI
/// kernel, or with int16 pair saturation on AVX2 when `pairs`. Panics if `isa` has no such
/// kernel or an extent is wrong.
#[allow(clippy::too_many_arguments)]
pub fn igemm_u8s8(isa: KernelIsa, pairs: bool, taps: usize, quads: usize, a: &[u8], offsets: &[usize], b: &[i8], c: &mut [i32]) {
    let (mr, nr) = indirect_tile(isa, !pairs).expect("an indirect kernel for this kernel set");
    check_indirect(mr, nr, taps, quads, 4, a.len(), offsets, b.len(), c.len());
    let (a, o, b, c) = (a.as_ptr(), offsets.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    if pairs {
        // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
        unsafe { avx2::igemm_u8s8_pairs(taps, quads, a, o, b, c) }
    } else if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW/VNNI detected; every extent checked above.
        unsafe { avx512vnni::igemm_u8s8(taps, quads, a, o, b, c) }
    } else {
        // SAFETY: AVX2 + AVX-VNNI detected; every extent checked above.
        unsafe { avxvnni::igemm_u8s8(taps, quads, a, o, b, c) }
    }
}

/// Indirect exact i16 x i16 tile product on AVX2. Panics unless `isa` has AVX2 or an extent is
/// wrong.
#[allow(clippy::too_many_arguments)]
pub fn igemm_i16(isa: KernelIsa, taps: usize, pairs: usize, a: &[i16], offsets: &[usize], b: &[i16], c: &mut [i32]) {
    let (mr, nr) = indirect_tile(isa, false).expect("an AVX2 kernel set");
    check_indirect(mr, nr, taps, pairs, 2, a.len(), offsets, b.len(), c.len());
    // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
    unsafe { avx2::igemm_i16(taps, pairs, a.as_ptr(), offsets.as_ptr(), b.as_ptr(), c.as_mut_ptr()) }
}

/// Runs `task` inside a function compiled for `isa`'s vector extensions, so that the loops
/// inlined into it (output stages, requantization) are vectorized for them: the task's `run` and
/// everything it calls on the hot path must be `#[inline(always)]`. No result changes: Rust
/// never fuses or reorders float operations, whatever the target features.
#[inline(always)]
pub fn with_isa<T: super::VectorTask>(isa: KernelIsa, task: T) -> T::Output {
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn avx512<T: super::VectorTask>(task: T) -> T::Output {
        task.run()
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<T: super::VectorTask>(task: T) -> T::Output {
        task.run()
    }
    if isa.is_avx512_vnni() {
        // SAFETY: the AVX-512 kernel set is only detected with AVX-512 F, BW, DQ and VL.
        unsafe { avx512(task) }
    } else if isa.has_avx2() {
        // SAFETY: every non-scalar kernel set is only detected with AVX2 and FMA.
        unsafe { avx2(task) }
    } else {
        task.run()
    }
}

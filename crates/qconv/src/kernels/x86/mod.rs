//! x86-64 SIMD kernels. Each public function is safe: it takes the [`KernelIsa`] that proves the
//! CPU supports its instructions, checks the slice lengths its `unsafe` body relies on, and calls
//! a `#[target_feature]` function that wraps an `#[inline(always)]` body.

mod avx2;
mod direct;
mod planar;
mod requant;

use super::KernelIsa;

/// Register tile of the AVX2 pair GEMM kernels.
pub const AVX2_TILE: (usize, usize) = (avx2::MR, avx2::NR);

fn check_panels(mr: usize, nr: usize, steps: usize, width: usize, a: usize, b: usize, c: usize) {
    assert!(a >= steps * mr * width, "A panel too short");
    assert!(b >= steps * nr * width, "B panel too short");
    assert!(c >= mr * nr, "C tile too short");
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

/// Planar convolution (see [`super::scalar::planar_f32`] and
/// [`super::scalar::planar_pairs_f32`]) with `isa`'s widest float vectors. Panics unless `isa`
/// has AVX2, `out.len()` is a multiple of [`super::PLANAR_BLOCK`], and every tap reads inside
/// `src`.
pub fn planar_f32(
    isa: KernelIsa,
    sum: super::PlanarSum,
    src: &[f32],
    offsets: &[usize],
    weights: &[f32],
    out: &mut [f32],
) {
    check_planar(isa, src, offsets, weights, out);
    let (s, o, len) = (src.as_ptr(), out.as_mut_ptr(), out.len());
    let pairs = sum == super::PlanarSum::SaturatingPairs;
    // SAFETY (each call): AVX-512 F, or AVX2 and FMA, detected (KernelIsa); extents and the
    // block multiple checked above.
    match (isa.is_avx512_vnni(), pairs) {
        (true, false) => unsafe { planar::planar_avx512::<false>(s, offsets, weights, o, len) },
        (true, true) => unsafe { planar::planar_avx512::<true>(s, offsets, weights, o, len) },
        (false, false) => unsafe { planar::planar_avx2::<false>(s, offsets, weights, o, len) },
        (false, true) => unsafe { planar::planar_avx2::<true>(s, offsets, weights, o, len) },
    }
}

/// Checks what the planar kernels rely on.
fn check_planar(isa: KernelIsa, src: &[f32], offsets: &[usize], weights: &[f32], out: &[f32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let len = out.len();
    assert!(
        len.is_multiple_of(super::PLANAR_BLOCK),
        "output not a whole number of blocks"
    );
    assert!(weights.len() >= offsets.len(), "a weight per tap");
    assert!(
        offsets.iter().all(|&o| o + len <= src.len()),
        "tap outside the plane"
    );
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
fn check_direct(
    tile: (usize, usize),
    width: usize,
    steps: &super::DirectSteps,
    b: usize,
    w: usize,
    acc: usize,
    ldc: usize,
) {
    let (mr, tw) = tile;
    let span = tw * width;
    assert!(
        steps.is_empty() || steps.max() + span <= b,
        "step outside B"
    );
    assert!(w >= steps.len() * mr * width, "weight panel too short");
    assert!(
        ldc >= tw && acc >= (mr - 1) * ldc + tw,
        "accumulator tile too short"
    );
}

/// Direct u8 x s8 tile (see [`super::scalar::direct_u8s8`]) with `isa`'s kernel. Panics if
/// `isa` has none for this kind or an extent is wrong.
#[allow(clippy::too_many_arguments)] // The tile's operands, as the scalar kernel takes them.
pub fn direct_u8s8(
    isa: KernelIsa,
    pairs: bool,
    pixels: usize,
    steps: &super::DirectSteps,
    b: &[u8],
    w: &[i8],
    acc: &mut [i32],
    ldc: usize,
) {
    let kind = if pairs {
        super::DirectKind::U8S8Pairs
    } else {
        super::DirectKind::U8S8
    };
    let tile = direct_tile(isa, kind).expect("a direct kernel for this kernel set");
    check_direct(tile, 4, steps, b.len(), w.len(), acc.len(), ldc);
    let (b, w, acc) = (b.as_ptr(), w.as_ptr(), acc.as_mut_ptr());
    let steps = steps.offsets();
    if pairs {
        // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
        unsafe { direct::u8s8_pairs_avx2(steps, b, w, acc, ldc) }
    } else if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW/VNNI detected; every extent checked above for the full tile,
        // which the narrower ones stay inside.
        match pixels.div_ceil(16) {
            0 | 1 => unsafe { direct::u8s8_avx512::<1>(steps, b, w, acc, ldc) },
            2 => unsafe { direct::u8s8_avx512::<2>(steps, b, w, acc, ldc) },
            _ => unsafe { direct::u8s8_avx512::<3>(steps, b, w, acc, ldc) },
        }
    } else {
        // SAFETY: AVX2 + AVX-VNNI detected; every extent checked above.
        unsafe { direct::u8s8_avxvnni(steps, b, w, acc, ldc) }
    }
}

/// Direct i16 tile (see [`super::scalar::direct_i16`]) on AVX2. Panics unless `isa` has AVX2
/// or if an extent is wrong.
pub fn direct_i16(
    isa: KernelIsa,
    steps: &super::DirectSteps,
    b: &[i16],
    w: &[i16],
    acc: &mut [i32],
    ldc: usize,
) {
    let tile = direct_tile(isa, super::DirectKind::I16).expect("an AVX2 kernel set");
    check_direct(tile, 2, steps, b.len(), w.len(), acc.len(), ldc);
    let steps = steps.offsets();
    // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
    unsafe { direct::i16_avx2(steps, b.as_ptr(), w.as_ptr(), acc.as_mut_ptr(), ldc) }
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

/// [`super::scalar::requantize_f32`] with `isa`'s vectors. Panics unless `isa` has AVX2, or if
/// `out` or `unsure` is too short.
pub fn requantize_f32<A: super::scalar::EstimateInput, T: super::scalar::EstimateOutput>(
    isa: KernelIsa,
    accs: &[A],
    acc_offset: i32,
    e: &super::scalar::F32Estimate,
    out: &mut [T],
    unsure: &mut [u64],
) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    assert!(matches!(size_of::<T>(), 1 | 4), "byte or int32 outputs");
    let n = accs.len();
    assert!(
        out.len() >= n && unsure.len() >= n.div_ceil(64),
        "output too short"
    );
    let (a, o, u) = (accs.as_ptr(), out.as_mut_ptr(), unsure.as_mut_ptr());
    if isa.is_avx512_vnni() {
        // SAFETY: AVX-512 F/BW detected (KernelIsa); n values of accs and out, ceil(n / 64)
        // words of unsure (checked above).
        unsafe { planar::requantize_f32_avx512(a, n, acc_offset, e, o, u) }
    } else {
        // SAFETY: AVX2 detected; extents checked above.
        unsafe { planar::requantize_f32_avx2(a, n, acc_offset, e, o, u) }
    }
}

/// Checks the extents an indirect kernel reads: every row start plus `span` values inside `a`.
#[allow(clippy::too_many_arguments)]
fn check_indirect(
    mr: usize,
    nr: usize,
    taps: usize,
    steps: usize,
    width: usize,
    a: usize,
    offsets: &[usize],
    b: usize,
    c: usize,
) {
    assert!(offsets.len() >= taps * mr, "offsets too short");
    let span = steps * width;
    assert!(
        offsets[..taps * mr].iter().all(|&o| o + span <= a),
        "row outside A"
    );
    assert!(b >= taps * steps * nr * width, "B panel too short");
    assert!(c >= mr * nr, "C tile too short");
}

/// Indirect u8 x s8 tile product with int16 pair saturation (see
/// [`super::scalar::igemm_u8s8_pairs`]) on [`AVX2_TILE`]. Panics unless `isa` has AVX2 or if an
/// extent is wrong.
pub fn igemm_u8s8_pairs(
    isa: KernelIsa,
    taps: usize,
    quads: usize,
    a: &[u8],
    offsets: &[usize],
    b: &[i8],
    c: &mut [i32],
) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    let (mr, nr) = AVX2_TILE;
    check_indirect(mr, nr, taps, quads, 4, a.len(), offsets, b.len(), c.len());
    // SAFETY: AVX2 detected (KernelIsa); every extent checked above.
    unsafe {
        avx2::igemm_u8s8_pairs(
            taps,
            quads,
            a.as_ptr(),
            offsets.as_ptr(),
            b.as_ptr(),
            c.as_mut_ptr(),
        )
    }
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

/// [`super::scalar::requantize_fp32`] on 8 lanes. Panics unless `isa` has AVX2 and
/// `out` is as long as `accs`.
pub fn requantize_fp32(isa: KernelIsa, p: &super::scalar::Fp32Run, accs: &[i32], out: &mut [i32]) {
    assert!(isa.has_avx2(), "an AVX2 kernel set");
    assert_eq!(accs.len(), out.len(), "one output per accumulator");
    // SAFETY: AVX2 and FMA detected (every non-scalar KernelIsa); lengths checked above.
    unsafe { requant::requantize_fp32_avx2(p, accs.as_ptr(), accs.len(), out.as_mut_ptr()) }
}

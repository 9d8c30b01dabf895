#!/usr/bin/env python3
"""Generate ONNX golden cases (QLinearConv / ConvInteger) in qconv's golden format.

Every case is one random quantized 2-D convolution, built as a one-node ONNX
model (opset 13, IR 8; weights, scales, zero points and bias as initializers,
only ``x`` is a graph input) and run through

* ``onnxruntime`` -- ONNX Runtime's CPU execution provider, default session
  options (graph optimizations on, weight prepacking on) except
  ``intra_op_num_threads`` (``--threads``, default 1; the thread count does not
  change ORT's integers, it only splits output pixels), and
* ``onnx_reference`` -- ``onnx.reference.ReferenceEvaluator``,

and the integers they return are recorded exactly as returned.  The layout is
the one described in shared/golden/FORMAT.md (gzip-compressed JSON lines, one
case per line), field for field and key for key in the order of the existing
``onnx-*`` files:

    id, source, conv, input, weight, bias, relu, expected[, errors], output

``expected`` maps engine -> flat NCHW integer list; an engine that raised is
left out of ``expected`` and the first line of its exception goes to
``errors[engine]`` (the key exists only when an engine raised).  For ORT 1.32
this happens for QLinearConv with int8 activations and uint8 weights
(``[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation
for QLinearConv(10) node with name ''``), exactly as in the corpus.  ConvInteger
cases have no scales (``input.scale``, ``weight.scale``, ``output.scale`` /
``zero_point`` are absent) and an ``int32`` output.  ``bias`` is ``null`` or
``{"dtype": "int32", "data": [...]}`` (already quantized with scale
``input.scale * weight.scale[oc]``).  ``relu`` is always ``false``.  Scales are
float32 values written as doubles.

``source`` holds ``framework`` ("onnxruntime"), ``version`` (onnxruntime's),
``isa`` (the ISA ORT was made to see, below), ``op`` and additionally
``family``, ``seed``, ``index``, ``generator``, ``threads``, ``cpuid_mask``
(the mask applied, or null), ``ort_path`` and ``ort_accumulation``.  The last
two are *predictions* from ORT 1.32's dispatch rules (research notes
onnxruntime.md), not observations: ``ort_path`` is ``convsym``,
``convsym-depthwise``, ``depthwise``, ``gemm``, ``gemm-depthwise-fallback``
(depthwise shape with non-uniform per-channel weight zero points, which ORT
1.32 runs as one GEMM per group) or ``refused``; ``ort_accumulation`` is
``saturating`` (u8 x s8 ``vpmaddubsw`` pairs summed in saturating int16) or
``exact``.

ISA selection (``--isa``)
-------------------------
ONNX Runtime's MLAS chooses its kernels once, from CPUID, and has no option to
lower that choice.  This script therefore builds a CPUID-faulting shim
(``cpuidmask.c`` next to this file, loaded by ``cpuidmask.py``; compiled with ``gcc -O2 -shared -fPIC``
into a temporary directory at run time) and enables it with
``arch_prctl(ARCH_SET_CPUID, 0)`` *before* importing numpy, onnx or
onnxruntime: from then on every CPUID instruction of the process traps and is
answered with the real values minus the masked feature bits.  Needs Linux on
x86-64, the ``cpuid_fault`` CPU flag and gcc.

    --isa         shim mode   ORT 1.32 kernels (u8 x s8)                       result
    avx2          1           AVX2 only: no AVX-512, no VNNI                    saturating pairs
    avx-vnni      2           AVX2 + AVX-VNNI, no AVX-512                       exact (vpdpbusds)
    avx512        3           AVX-512 F/CD/BW/DQ/VL, no VNNI of any kind        saturating pairs
    avx512-vnni   4           AVX-512 + AVX512-VNNI, AVX-VNNI masked            exact

(all modes also hide AVX-VNNI-INT8 and AMX.)  The mask can only remove
features: the script refuses an ISA the CPU lacks.  It then verifies that the
mask took effect, twice:

1. CPUID as seen through the shim (leaf 7 / 7.1: AVX2, AVX512F/BW/DQ/VL,
   AVX512-VNNI, AVX-VNNI) must show exactly the requested feature set, and the
   shim must have trapped CPUID instructions;
2. behaviour: the forum seed layer (5x5 input of 200, scale 0.012728, zp 33;
   the int8 5x5 weight, scale 0.00292, zp -11, duplicated to OC = 2 so ORT
   takes the GEMM path instead of the exact depthwise kernel; output scale
   0.02091, zp 0) must give [7, 7] on the saturating ISAs (avx2, avx512) and
   [0, 0] on the VNNI ones; and a ConvInteger with int8 input [-128, -128] and
   uint8 weight [255, 255] must give -32768 (saturated pair) resp. -65280.

If either check fails the script stops before writing anything.
``--no-mask`` skips the shim (ORT sees the real CPU; ``source.isa`` is then the
host's ISA class and ``cpuid_mask`` is null).

Families (``--family``)
-----------------------
Distributions mimic shared/golden/onnx-*.jsonl.gz (shares and ranges measured on
those files):

* scales log-uniform: input 1e-3..1e-1, weight 1e-4..10^-1.5 (per channel
  independently); output scale = (range of the exact real output, bias
  included) / 255 x 10^N(mu, sd) with (mu, sd) fitted per family to the corpus
  (e.g. mixed (-0.15, 0.65), saturating (-0.5, 0.45)), never below 10 x input
  scale x median weight scale; output zero point uniform over the output type
  (so part of the outputs clip, as in the corpus);
* weight zero points: per-tensor (symmetric 0 / 128 for uint8 weights in
  ~77 %, else sym + U[-10, 10]) or per-channel (axis 0): all symmetric, all
  equal non-symmetric, or varied per channel (each sym + U[-10, 10]);
* bias (int32) in ~50-63 % of QLinearConv cases: per channel normal with sd =
  accumulator sd x 10^U(-1, 1.2) (15 %: 10^U(1.2, 3.5)), |bias| <= 6e7;
* data mode ``near`` (activations normal around a uniform zero point, sd 25;
  weights normal around 0 / 128, sd 25) or ``full`` (both uniform over the type,
  activation zero point small: uint8 0..39, int8 -20..19);
* geometry: kernels as in the corpus (3x3 most, 1x1, 5x5, 7x7, 2x2 and
  rectangular ones), square strides 1..3, dilation 1 or 2 (~30 %), padding
  none (~8 %, counting symmetric zeros), symmetric (~77 %) or asymmetric
  [top, left, bottom, right] (~15 %), each side 0..(dilated kernel // 2 + 1),
  N in {1, 2}, H and W up to ~23 (the input may be smaller than the kernel
  when the padding makes up for it).

Per family:

* ``qlinearconv-mixed``       dtypes (x, w, y) u8/s8/u8 49 %, s8/s8/s8 33.5 %,
                              u8/u8/u8 12 %, s8/u8/s8 5.5 % (refused by ORT);
                              groups 1 (C 1..9, OC 1..7), 2 (C/G 1..9, OC/G
                              1..7) or depthwise (C 2..15); ~33 % per-channel;
                              data half near, half full.
* ``qlinearconv-saturating``  like mixed, groups 1 or 2, data always ``full``
                              (frequent int16 pair saturation on AVX2).
* ``qlinearconv-depthwise``   groups == C (C 1..16, ~12 % C in {16, 32}, which
                              with symmetric s8 weights and u8 input is ORT's
                              ConvSym depthwise kernel), multiplier 1; ~40 %
                              per-channel, half of those with varied zero
                              points (ORT 1.32 then leaves the depthwise kernel
                              for per-group GEMMs, which saturate on AVX2).
* ``qlinearconv-large``       groups 1, C in {32, 64, 128}, OC in {8, 16, 32}
                              (ConvSym-eligible when symmetric s8 weights and
                              u8 input), at most 60 000 stored integers per case.
* ``convinteger-mixed``       ConvInteger, (x, w) u8/s8 50 %, s8/s8 28 %,
                              u8/u8 10 %, s8/u8 12 % (the saturating one on
                              AVX2), per-tensor weight zero point only (ORT
                              refuses per-channel), groups 1 / 2 / depthwise.

Each case's random state is ``numpy.random.default_rng([seed, family#,
index])``: a case depends only on (family, seed, index), never on ``--count``,
``--isa`` or ``--threads``.  Ids are ``onnx-<family>-<isa>-<seed>-<index:04d>``.

Usage
-----
    /work/venv/bin/python tools/golden/gen_onnx.py \\
        --family qlinearconv-saturating --count 80 --seed 7002 --isa avx2 \\
        --out /work/unseen-onnx/onnx-qlinearconv-saturating-avx2-7002.jsonl.gz

Requires numpy, onnx (1.23.2 was used) and onnxruntime (1.32.0 was used), gcc,
and this directory's cpuidmask.c and cpuidmask.py.  Does not need any other repository file.
"""

import argparse
import gzip
import json
import os
import sys
import time

GENERATOR = "tools/golden/gen_onnx.py"

FAMILIES = [
    "qlinearconv-mixed",
    "qlinearconv-saturating",
    "qlinearconv-depthwise",
    "qlinearconv-large",
    "convinteger-mixed",
]

# The CPUID shim's Python side (build, enable, query) lives in cpuidmask.py next to this file,
# shared with tools/bench/peers.py (--emulate). It imports only the standard library.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpuidmask import (ISA_FEATURES, ISA_MODES, MaskError, cpu_flags, cpuid_features,  # noqa: E402
                       host_isa, isa_available)
import cpuidmask  # noqa: E402

SATURATING_ISAS = ("avx2", "avx512")  # u8 x s8 kernels use vpmaddubsw pairs

# ------------------------------------------------------------------------------------------
# CPUID mask (must run before numpy / onnx / onnxruntime are imported)
# ------------------------------------------------------------------------------------------


def build_and_enable_mask(isa):
    """Compile cpuidmask.c into a temporary directory, load it, enable the mode for `isa`."""
    try:
        return cpuidmask.build_and_enable(isa)
    except MaskError as e:
        sys.exit(f"gen_onnx: {e}")


# ------------------------------------------------------------------------------------------
# Everything below runs after the mask is in place (imports happen in main()).
# ------------------------------------------------------------------------------------------

np = None  # numpy, imported in main()

KERNELS_MIXED = [((3, 3), 72), ((1, 1), 26), ((5, 5), 23), ((7, 7), 21), ((2, 2), 21),
                 ((2, 3), 7), ((1, 3), 6), ((3, 1), 6), ((5, 3), 5), ((5, 1), 5),
                 ((7, 3), 3), ((2, 1), 3), ((7, 1), 2)]
KERNELS_DW = [((3, 3), 17), ((5, 5), 12), ((1, 1), 11), ((7, 7), 7), ((3, 1), 5),
              ((5, 1), 3), ((1, 3), 2), ((2, 2), 2), ((7, 3), 1)]
KERNELS_LARGE = [((3, 3), 10), ((7, 7), 5), ((2, 2), 5), ((5, 5), 4), ((1, 1), 4),
                 ((7, 1), 1), ((5, 1), 1)]

U8S8, S8S8, U8U8, S8U8 = ("uint8", "int8"), ("int8", "int8"), ("uint8", "uint8"), ("int8", "uint8")

CONFIG = {
    "qlinearconv-mixed": dict(
        op="QLinearConv", combos=[(U8S8, 49), (S8S8, 33.5), (U8U8, 12), (S8U8, 5.5)],
        kernels=KERNELS_MIXED, p_dil2=0.28, strides=(0.48, 0.27, 0.25), p_n2=0.32,
        groups=[("1", 0.64), ("2", 0.22), ("dw", 0.14)], pads=(0.02, 0.83, 0.15),
        p_full=0.5, p_pc=0.33, pc_varied=0.38, p_bias=0.58, ys_log=(-0.15, 0.65)),
    "qlinearconv-saturating": dict(
        op="QLinearConv", combos=[(U8S8, 46), (S8S8, 32.5), (U8U8, 15), (S8U8, 6.5)],
        kernels=KERNELS_MIXED, p_dil2=0.29, strides=(0.51, 0.28, 0.21), p_n2=0.25,
        groups=[("1", 0.71), ("2", 0.29)], pads=(0.09, 0.74, 0.17),
        p_full=1.0, p_pc=0.41, pc_varied=0.3, p_bias=0.61, ys_log=(-0.5, 0.45)),
    "qlinearconv-depthwise": dict(
        op="QLinearConv", combos=[(U8S8, 53), (S8S8, 23), (S8U8, 13), (U8U8, 10)],
        kernels=KERNELS_DW, p_dil2=0.27, strides=(0.43, 0.22, 0.35), p_n2=0.30,
        groups=[("dw", 1.0)], pads=(0.01, 0.77, 0.22),
        p_full=0.4, p_pc=0.40, pc_varied=0.5, p_bias=0.63, ys_log=(-0.1, 0.6)),
    "qlinearconv-large": dict(
        op="QLinearConv", combos=[(U8S8, 43), (S8S8, 30), (U8U8, 13.5), (S8U8, 13.5)],
        kernels=KERNELS_LARGE, p_dil2=0.30, strides=(0.47, 0.37, 0.16), p_n2=0.30,
        groups=[("large", 1.0)], pads=(0.12, 0.68, 0.2),
        p_full=0.4, p_pc=0.30, pc_varied=0.3, p_bias=0.50, ys_log=(-0.2, 0.8)),
    "convinteger-mixed": dict(
        op="ConvInteger", combos=[(U8S8, 50), (S8S8, 28), (U8U8, 10), (S8U8, 12)],
        kernels=KERNELS_MIXED, p_dil2=0.36, strides=(0.58, 0.25, 0.17), p_n2=0.41,
        groups=[("1", 0.70), ("2", 0.22), ("dw", 0.08)], pads=(0.03, 0.80, 0.17),
        p_full=0.45, p_pc=0.0, pc_varied=0.0, p_bias=0.0, ys_log=None),
}

LARGE_MAX_INTS = 60000  # input + weight + 2 x output integers per large case


def rng_range(dtype):
    return (0, 255) if dtype == "uint8" else (-128, 127)


def pick(rng, weighted):
    items = [w[0] for w in weighted]
    p = np.array([w[1] for w in weighted], dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def f32(v):
    """A float32 value as the double that prints/parses back to the same float32."""
    return float(np.float32(v))


def draw_geometry(rng, cfg):
    """Channels, groups, kernel, stride, dilation, padding, N, H, W."""
    gk = pick(rng, cfg["groups"])
    if gk == "1":
        G, C, OC = 1, int(rng.integers(1, 10)), int(rng.integers(1, 8))
    elif gk == "2":
        G = 2
        C, OC = 2 * int(rng.integers(1, 10)), 2 * int(rng.integers(1, 8))
    elif gk == "dw":
        if cfg is CONFIG["qlinearconv-depthwise"]:
            C = int(rng.choice([16, 32])) if rng.random() < 0.12 else int(rng.integers(1, 17))
        else:
            C = int(rng.integers(2, 16))
        G, OC = C, C
    else:  # large
        G, C, OC = 1, int(rng.choice([32, 64, 128])), int(rng.choice([8, 16, 32]))
    kh, kw = pick(rng, cfg["kernels"])
    d = 2 if rng.random() < cfg["p_dil2"] else 1
    s = int(rng.choice([1, 2, 3], p=np.array(cfg["strides"]) / sum(cfg["strides"])))
    ekh, ekw = d * (kh - 1) + 1, d * (kw - 1) + 1
    pk = rng.choice(3, p=np.array(cfg["pads"]) / sum(cfg["pads"]))
    if pk == 0:
        pad = [0, 0, 0, 0]
    elif pk == 1:
        ph, pw = int(rng.integers(0, ekh // 2 + 2)), int(rng.integers(0, ekw // 2 + 2))
        pad = [ph, pw, ph, pw]
    else:
        while True:
            pad = [int(rng.integers(0, ekh // 2 + 2)), int(rng.integers(0, ekw // 2 + 2)),
                   int(rng.integers(0, ekh // 2 + 2)), int(rng.integers(0, ekw // 2 + 2))]
            if not (pad[0] == pad[2] and pad[1] == pad[3]):
                break
    N = 2 if rng.random() < cfg["p_n2"] else 1
    top = 20 if gk == "large" else 16
    hw = []
    for ek, p0, p1 in ((ekh, pad[0], pad[2]), (ekw, pad[1], pad[3])):
        lo = max(1, ek - p0 - p1)
        hi = max(lo, top) if rng.random() < 0.8 else max(lo, 23)
        hw.append(int(rng.integers(lo, hi + 1)))
    return dict(G=G, C=C, OC=OC, kh=kh, kw=kw, d=d, s=s, pad=pad, N=N, H=hw[0], W=hw[1])


def out_hw(g):
    ekh, ekw = g["d"] * (g["kh"] - 1) + 1, g["d"] * (g["kw"] - 1) + 1
    oh = (g["H"] + g["pad"][0] + g["pad"][2] - ekh) // g["s"] + 1
    ow = (g["W"] + g["pad"][1] + g["pad"][3] - ekw) // g["s"] + 1
    return oh, ow


def stored_ints(g):
    oh, ow = out_hw(g)
    return (g["N"] * g["C"] * g["H"] * g["W"] + g["OC"] * (g["C"] // g["G"]) * g["kh"] * g["kw"]
            + 2 * g["N"] * g["OC"] * oh * ow)


def exact_acc(X, xzp, Wt, wzp, g):
    """Exact int64 sum (x - x_zp)(w - w_zp) over each output's taps; padding is real zero."""
    N, C, H, W = X.shape
    OC, Cg, kh, kw = Wt.shape
    G, d, s = g["G"], g["d"], g["s"]
    t, l, b, r = g["pad"]
    Xc = np.zeros((N, C, H + t + b, W + l + r), np.int64)
    Xc[:, :, t:t + H, l:l + W] = X.astype(np.int64) - xzp
    Wc = Wt.astype(np.int64) - np.asarray(wzp, np.int64).reshape(-1, 1, 1, 1)
    oh, ow = out_hw(g)
    out = np.zeros((N, OC, oh, ow), np.int64)
    OCg = OC // G
    for gi in range(G):
        xs = Xc[:, gi * Cg:(gi + 1) * Cg]
        ws = Wc[gi * OCg:(gi + 1) * OCg]
        for a in range(kh):
            for c in range(kw):
                patch = xs[:, :, a * d:a * d + s * (oh - 1) + 1:s, c * d:c * d + s * (ow - 1) + 1:s]
                out[:, gi * OCg:(gi + 1) * OCg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, a, c])
    return out


def predict_path(op, xd, wd, yd, g, wzp, isa):
    """ORT 1.32 kernel path and accumulation for this layer, from its dispatch rules."""
    G, C, OC = g["G"], g["C"], g["OC"]
    Cg, OCg = C // G, OC // G
    sat_isa = isa in SATURATING_ISAS
    if op == "ConvInteger":
        # GEMM with A = W, B = im2col(X): U8S8 kernel (pairs) when W is u8 and X is s8.
        return "gemm", ("saturating" if sat_isa and wd == "uint8" and xd == "int8" else "exact")
    if not ((xd, wd, yd) in (("uint8", "int8", "uint8"), ("uint8", "uint8", "uint8"),
                             ("int8", "int8", "int8"))):
        return "refused", None
    u8s8 = xd == "uint8" and wd == "int8"
    sym = all(z == 0 for z in wzp)
    path = None
    if u8s8 and sym:
        if G > 1 and Cg == 1 and OCg == 1 and G % 16 == 0:
            path = "convsym-depthwise"
        elif G == 1 and OC >= 16 and C % 4 == 0 and OC % (4 if isa.startswith("avx512") else 8) == 0:
            path = "convsym"
    if path is None:
        if Cg == 1 and OCg == 1:
            path = "depthwise" if len(set(wzp)) == 1 else "gemm-depthwise-fallback"
        else:
            path = "gemm"
    saturating = sat_isa and u8s8 and path in ("gemm", "gemm-depthwise-fallback", "convsym")
    return path, ("saturating" if saturating else "exact")


def draw_case(family, seed, index, isa, threads, version, mask_mode):
    cfg = CONFIG[family]
    op = cfg["op"]
    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    xd, wd = pick(rng, cfg["combos"])
    yd = xd if op == "QLinearConv" else "int32"
    for _ in range(1000):
        g = draw_geometry(rng, cfg)
        if min(out_hw(g)) >= 1 and (family != "qlinearconv-large" or stored_ints(g) <= LARGE_MAX_INTS):
            break
    else:
        raise RuntimeError("no geometry found")
    G, C, OC, N, H, W = g["G"], g["C"], g["OC"], g["N"], g["H"], g["W"]
    Cg = C // G
    xlo, xhi = rng_range(xd)
    wlo, whi = rng_range(wd)
    full = rng.random() < cfg["p_full"]
    if full:
        xzp = int(rng.integers(0, 40)) if xd == "uint8" else int(rng.integers(-20, 20))
        X = rng.integers(xlo, xhi + 1, (N, C, H, W))
        Wt = rng.integers(wlo, whi + 1, (OC, Cg, g["kh"], g["kw"]))
    else:
        xzp = int(rng.integers(xlo, xhi + 1))
        X = np.clip(np.rint(rng.normal(xzp, 25, (N, C, H, W))), xlo, xhi)
        centre = 0 if wd == "int8" else 128
        Wt = np.clip(np.rint(rng.normal(centre, 25, (OC, Cg, g["kh"], g["kw"]))), wlo, whi)
    X, Wt = X.astype(np.int64), Wt.astype(np.int64)

    sym = 0 if wd == "int8" else 128

    def other_zp():
        return int(sym + rng.integers(-10, 11))

    per_channel = rng.random() < cfg["p_pc"]
    if per_channel:
        r = rng.random()
        if r < cfg["pc_varied"]:
            wzp = [other_zp() for _ in range(OC)]
        elif r < cfg["pc_varied"] + 0.12:
            wzp = [other_zp()] * OC
        else:
            wzp = [sym] * OC
    else:
        wzp = [sym] if rng.random() < (0.77 if op == "QLinearConv" else 0.70) else [other_zp()]

    oh, ow = out_hw(g)
    acc = exact_acc(X, xzp, Wt, wzp if len(wzp) > 1 else wzp * OC, g)
    acc_sd = float(acc.std()) or 1.0

    case = {"id": f"onnx-{family}-{isa}-{seed}-{index:04d}"}
    source = {"framework": "onnxruntime", "version": version, "isa": isa, "op": op,
              "family": family, "seed": seed, "index": index, "generator": GENERATOR,
              "threads": threads, "cpuid_mask": mask_mode}
    path, accum = predict_path(op, xd, wd, yd, g, wzp, isa)
    source["ort_path"], source["ort_accumulation"] = path, accum
    case["source"] = source
    case["conv"] = {"kernel": [g["kh"], g["kw"]], "stride": [g["s"], g["s"]], "padding": g["pad"],
                    "dilation": [g["d"], g["d"]], "groups": G}
    case["input"] = {"dtype": xd, "shape": [N, C, H, W], "zero_point": xzp,
                     "data": [int(v) for v in X.reshape(-1)]}
    case["weight"] = {"dtype": wd, "shape": [OC, Cg, g["kh"], g["kw"]],
                      "axis": 0 if per_channel else None, "zero_point": wzp,
                      "data": [int(v) for v in Wt.reshape(-1)]}
    case["bias"] = None
    case["relu"] = False
    if op == "QLinearConv":
        xs = f32(10 ** rng.uniform(-3, -1))
        ws = [f32(v) for v in 10 ** rng.uniform(-4, -1.5, OC if per_channel else 1)]
        case["input"]["scale"] = xs
        case["weight"]["scale"] = ws
        if rng.random() < cfg["p_bias"]:
            lo, hi = (-1, 1.2) if rng.random() < 0.85 else (1.2, 3.5)
            b = np.rint(rng.normal(0, 1, OC) * acc_sd * 10 ** rng.uniform(lo, hi))
            b = np.clip(b, -6e7, 6e7)
            case["bias"] = {"dtype": "int32", "data": [int(v) for v in b]}
        # output scale: the real output's range (bias included) / 255 x 10^N(mu, sd), as in
        # the corpus (which then clips where the uniform output zero point misplaces the range)
        mu, sd = cfg["ys_log"]
        bias = np.array(case["bias"]["data"] if case["bias"] else [0] * OC, np.float64)
        wsc = np.array(ws if per_channel else ws * OC, np.float64)
        real = (acc + bias.reshape(1, -1, 1, 1)) * (xs * wsc).reshape(1, -1, 1, 1)
        span = float(real.max() - real.min()) or float(np.abs(real).max()) or 1.0
        m = xs * float(np.median(ws))
        ys = span / 255 * 10 ** float(np.clip(rng.normal(mu, sd), -2.3, 1.9))
        ys = f32(max(ys, 10 * m))  # M = xs*ws/ys <= 0.1, as everywhere in the corpus
        ylo, yhi = rng_range(yd)
        case["output"] = {"dtype": yd, "scale": ys, "zero_point": int(rng.integers(ylo, yhi + 1)),
                          "shape": [N, OC, oh, ow]}
    else:
        case["output"] = {"dtype": "int32", "shape": [N, OC, oh, ow]}
    return case


# ------------------------------------------------------------------------------------------
# Running the engines
# ------------------------------------------------------------------------------------------

NPT = {"uint8": "uint8", "int8": "int8", "int32": "int32"}


def build_model(case):
    """One-node ONNX model; everything but `x` is an initializer (constant)."""
    from onnx import TensorProto, helper, numpy_helper
    tp = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "int32": TensorProto.INT32}
    op = case["source"]["op"]
    cv, xi, wi, oi = case["conv"], case["input"], case["weight"], case["output"]
    inits = []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    W = np.array(wi["data"], dtype=NPT[wi["dtype"]]).reshape(wi["shape"])
    per_channel = wi["axis"] is not None
    wzp = np.array(wi["zero_point"], dtype=NPT[wi["dtype"]])
    xzp = np.array(xi["zero_point"], dtype=NPT[xi["dtype"]])
    if op == "QLinearConv":
        ws = np.array(wi["scale"], dtype=np.float32)
        if not per_channel:
            ws, wzp = ws.reshape(()), wzp.reshape(())
        names = ["x", init("x_scale", np.float32(xi["scale"])), init("x_zero_point", xzp),
                 init("w", W), init("w_scale", ws), init("w_zero_point", wzp),
                 init("y_scale", np.float32(oi["scale"])),
                 init("y_zero_point", np.array(oi["zero_point"], dtype=NPT[oi["dtype"]]))]
        if case["bias"] is not None:
            names.append(init("b", np.array(case["bias"]["data"], dtype=np.int32)))
    else:
        names = ["x", init("w", W), init("x_zero_point", xzp),
                 init("w_zero_point", wzp.reshape(()) if not per_channel else wzp)]
    node = helper.make_node(op, names, ["y"], kernel_shape=cv["kernel"], strides=cv["stride"],
                            pads=cv["padding"], dilations=cv["dilation"], group=cv["groups"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", tp[xi["dtype"]], xi["shape"])],
        [helper.make_tensor_value_info("y", tp[oi["dtype"]], None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def first_line(e):
    lines = str(e).splitlines()
    return lines[0] if lines and lines[0] else type(e).__name__


def run_engines(case, threads):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    model = build_model(case)
    xi = case["input"]
    feeds = {"x": np.array(xi["data"], dtype=NPT[xi["dtype"]]).reshape(xi["shape"])}
    shape = case["output"]["shape"]
    expected, errors = {}, {}
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        y = sess.run(None, feeds)[0]
        if list(y.shape) != shape or y.dtype != np.dtype(NPT[case["output"]["dtype"]]):
            raise SystemExit(f"{case['id']}: ORT output {y.dtype}{list(y.shape)} != {shape}")
        expected["onnxruntime"] = [int(v) for v in y.reshape(-1)]
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - any refusal is recorded
        errors["onnxruntime"] = first_line(e)
    try:
        y = ReferenceEvaluator(model).run(None, feeds)[0]
        if list(y.shape) != shape:
            raise SystemExit(f"{case['id']}: reference output {list(y.shape)} != {shape}")
        expected["onnx_reference"] = [int(v) for v in np.asarray(y).reshape(-1)]
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        errors["onnx_reference"] = first_line(e)
    # key order of the corpus: ..., bias, relu, expected, errors, output
    out = {k: case[k] for k in ("id", "source", "conv", "input", "weight", "bias", "relu")}
    out["expected"] = expected
    if errors:
        out["errors"] = errors
    out["output"] = case["output"]
    return out


# ------------------------------------------------------------------------------------------
# Self-check of the mask: the forum seed layer with OC = 2, and a saturating ConvInteger pair
# ------------------------------------------------------------------------------------------

SEED_W = [9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31,
          50, 48, 23, -3, 64, -87, -91]


def selfcheck_cases():
    src = {"op": "QLinearConv"}
    seed = {"id": "selfcheck-seed-oc2", "source": src,
            "conv": {"kernel": [5, 5], "stride": [1, 1], "padding": [0, 0, 0, 0],
                     "dilation": [1, 1], "groups": 1},
            "input": {"dtype": "uint8", "shape": [1, 1, 5, 5], "zero_point": 33,
                      "data": [200] * 25, "scale": 0.012728},
            "weight": {"dtype": "int8", "shape": [2, 1, 5, 5], "axis": None, "zero_point": [-11],
                       "data": SEED_W * 2, "scale": [0.00292]},
            "bias": None, "relu": False,
            "output": {"dtype": "uint8", "scale": 0.02091, "zero_point": 0, "shape": [1, 2, 1, 1]}}
    ci = {"id": "selfcheck-convinteger-s8u8", "source": {"op": "ConvInteger"},
          "conv": {"kernel": [1, 2], "stride": [1, 1], "padding": [0, 0, 0, 0],
                   "dilation": [1, 1], "groups": 1},
          "input": {"dtype": "int8", "shape": [1, 1, 1, 2], "zero_point": 0, "data": [-128, -128]},
          "weight": {"dtype": "uint8", "shape": [1, 1, 1, 2], "axis": None, "zero_point": [0],
                     "data": [255, 255]},
          "bias": None, "relu": False, "output": {"dtype": "int32", "shape": [1, 1, 1, 1]}}
    return seed, ci


def selfcheck(isa, threads):
    seed, ci = selfcheck_cases()
    sat = isa in SATURATING_ISAS
    want_seed, want_ci = ([7, 7], [-32768]) if sat else ([0, 0], [-65280])
    got_seed = run_engines(seed, threads)["expected"].get("onnxruntime")
    got_ci = run_engines(ci, threads)["expected"].get("onnxruntime")
    ok = got_seed == want_seed and got_ci == want_ci
    return ok, f"seed(OC=2) {got_seed} (want {want_seed}), ConvInteger s8xu8 {got_ci} (want {want_ci})"


# ------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    ap.add_argument("--isa", choices=list(ISA_MODES), default="avx2")
    ap.add_argument("--no-mask", action="store_true",
                    help="do not install the CPUID mask; --isa must then be the host's own ISA class")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (default 1)")
    ap.add_argument("--out", required=True, help="output .jsonl.gz (or .jsonl)")
    ap.add_argument("--no-selfcheck", action="store_true", help="skip the behavioural mask check")
    a = ap.parse_args()

    flags = cpu_flags()
    mask_mode = None
    if a.no_mask:
        if host_isa(flags) != a.isa:
            sys.exit(f"gen_onnx: --no-mask but this CPU is {host_isa(flags)}, not {a.isa}")
    else:
        if not isa_available(a.isa, flags):
            sys.exit(f"gen_onnx: this CPU lacks {a.isa}; the CPUID mask can only remove features")
        if "cpuid_fault" not in flags:
            sys.exit("gen_onnx: CPU flag cpuid_fault missing: cannot mask CPUID "
                     "(use --no-mask on a machine whose own ISA is the one wanted)")
        lib = build_and_enable_mask(a.isa)
        mask_mode = a.isa
        feats = cpuid_features(lib)
        if feats != ISA_FEATURES[a.isa] or lib.cpuidmask_count() == 0:
            sys.exit(f"gen_onnx: CPUID after masking shows (avx2, avx512, avx512_vnni, avx_vnni) = "
                     f"{feats}, expected {ISA_FEATURES[a.isa]}")
        print(f"gen_onnx: CPUID mask {a.isa} (mode {ISA_MODES[a.isa]}): (avx2, avx512, avx512_vnni, "
              f"avx_vnni) = {feats}", file=sys.stderr)

    # Only now import the numerical stack and ONNX Runtime (MLAS reads CPUID at load / first use).
    global np
    import numpy
    np = numpy
    import onnx  # noqa: F401
    import onnxruntime as ort

    if not a.no_selfcheck:
        ok, msg = selfcheck(a.isa, a.threads)
        print(f"gen_onnx: self-check {a.isa}: {msg}", file=sys.stderr)
        if not ok:
            sys.exit("gen_onnx: the ISA self-check failed; ORT is not using the expected kernels")
    if mask_mode is not None:
        print(f"gen_onnx: CPUID instructions trapped so far: {lib.cpuidmask_count()}", file=sys.stderr)

    t0 = time.time()
    lines, n_err, n_diff, paths = [], 0, 0, {}
    for i in range(a.start, a.start + a.count):
        case = draw_case(a.family, a.seed, i, a.isa, a.threads, ort.__version__, mask_mode)
        case = run_engines(case, a.threads)
        e = case["expected"]
        if "errors" in case:
            n_err += 1
        elif e.get("onnxruntime") != e.get("onnx_reference"):
            n_diff += 1
        p = case["source"]["ort_path"]
        paths[p] = paths.get(p, 0) + 1
        lines.append(json.dumps(case) + "\n")
        if (i - a.start + 1) % 20 == 0:
            print(f"  {i - a.start + 1}/{a.count} ({time.time() - t0:.1f} s)", file=sys.stderr)

    tmp = a.out + ".tmp"
    data = "".join(lines).encode("utf-8")
    if a.out.endswith(".gz"):
        inner = os.path.basename(a.out)[:-3]
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename=inner, mode="wb", compresslevel=9, fileobj=raw, mtime=0) as f:
                f.write(data)
    else:
        with open(tmp, "wb") as f:
            f.write(data)
    os.replace(tmp, a.out)
    print(f"gen_onnx: wrote {a.count} cases to {a.out} ({os.path.getsize(a.out)} bytes, "
          f"{time.time() - t0:.1f} s): {n_err} with errors, {n_diff} where onnxruntime != "
          f"onnx_reference; predicted ORT paths {dict(sorted(paths.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()

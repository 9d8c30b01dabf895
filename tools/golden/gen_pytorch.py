#!/usr/bin/env python3
"""Generate PyTorch golden cases for quantized int8 Conv2d (qconv's golden format).

Every case is one random quantized convolution, run through the real PyTorch
quantized engines on this machine, with the integers they return recorded as
they are (saturation, rounding quirks and all).  The file layout is the one
described in shared/golden/FORMAT.md: gzip-compressed JSON lines, one case per
line, fields

    id, source, conv, input, weight, bias, relu, output, expected[, errors]

`expected` holds, per engine, the quint8 output integers (NCHW row-major):

* ``fbgemm`` / ``x86`` / ``qnnpack`` -- ``torch.backends.quantized.engine`` set
  to that engine, then ``torch.ao.nn.quantized.Conv2d`` (or
  ``torch.ao.nn.intrinsic.quantized.ConvReLU2d`` when ``relu``) with
  ``set_weight_bias(quantized weight, float bias)`` applied to a quint8 input.
* ``float_path`` -- dequantize input and weight, ``F.conv2d`` in float32 with
  the float bias, optional ReLU, ``torch.quantize_per_tensor`` to the output
  parameters (quint8).

An engine that raises is left out of ``expected`` and its error's first line
goes to ``errors[engine]`` (the key is absent when no engine raised).

ISA selection
-------------
``--isa`` picks the FBGEMM instruction set.  FBGEMM reads the environment
variable ``FBGEMM_ENABLE_INSTRUCTIONS`` once, at its first use, and can only
*lower* the ISA the CPU offers, so this script sets it before importing torch:

    avx2         FBGEMM_ENABLE_INSTRUCTIONS=AVX2    (vpmaddubsw, int16 pair saturation)
    avx512       FBGEMM_ENABLE_INSTRUCTIONS=AVX512  (AVX-512 without VNNI, still saturating)
    avx512-vnni  variable removed                   (needs a CPU with avx512_vnni)

The script refuses an ISA the CPU does not have, and (unless
``--no-selfcheck``) runs the forum seed conv first and checks that fbgemm
returns 7 on avx2/avx512 (saturating) and 0 on avx512-vnni (exact).

The override does NOT change how the ``x86`` engine routes a conv: PyTorch
asks cpuinfo directly whether the CPU has AVX-512-VNNI and, if so, sends convs
with symmetric weights (all weight zero points 0) and groups <= 100 to oneDNN,
everything else to FBGEMM.  Two FBGEMM details also ignore the override, because they ask cpuinfo directly
(fbgemmHasAvx512VnniSupport / fbgemmHasAvx512Support): the groupwise JIT kernel
(so on an AVX-512-VNNI CPU groupwise-path convs are EXACT even with
FBGEMM_ENABLE_INSTRUCTIONS=AVX2) and the groupwise eligibility threshold
G_together.  ``source.fbgemm_accumulation`` records the consequence per case.

The route x86 actually took is observed for every
case with oneDNN's verbose log (a ``convolution`` primitive executed during
the x86 forward call means oneDNN) and written to ``source.x86_route``
("onednn" or "fbgemm"); ``source.x86_onednn_impl`` names the oneDNN kernel.
The script also derives the route from that rule and stops if the two ever
disagree (``--no-route-check`` turns the check into a warning).

Extra ``source`` keys
---------------------
``family``, ``seed``, ``index``, ``generator``, ``fbgemm_enable_instructions``
(the env value used, or null), ``threads``, ``x86_route``,
``x86_onednn_impl`` (only for the onednn route), and ``fbgemm_path``: the FBGEMM
kernel path the conv should take according to FBGEMM's dispatch rules
(``depthwise``, ``groupwise``, ``pointwise`` or ``im2col``; derived from the
geometry and the CPU, not observed), and ``fbgemm_accumulation``:
``saturating`` (int16 pairs, vpmaddubsw) or ``exact`` (vpdpbusd), derived from
the path, the ISA and the CPU: depthwise always saturates; groupwise is exact
on any AVX-512-VNNI CPU; im2col/pointwise are exact only for avx512-vnni.

Families (``--family``)
-----------------------
Distributions mimic the existing corpus (shared/golden/pytorch-*.jsonl.gz):
scales log-uniform (activation 1e-3..0.1, weight 1e-4..0.032), ~37 %
per-channel weights, ~60 % symmetric weights, ~60 % bias, ~20-35 % ReLU,
N in {1, 2}, output scale/zero point fitted to the float result's range times
a random factor 0.5..3.5.  Activations are drawn in one of three modes:
``nearzp`` (normal around the zero point, sd 15..35), ``hi128`` (uniform
128..255) or ``full`` (uniform 0..255); weights ``normal`` (sd 12..32 around the
weight zero point) or ``full`` (uniform -128..127).

* ``mixed``      random geometry: kernels 1..7 (square and rectangular), strides
                 1..3, dilation 1/2, any padding, ~25 % grouped; all data modes.
* ``saturating`` groups 1, activations ``full``/``hi128`` and ``full`` weights:
                 int16 pair saturation in the AVX2/AVX-512 kernels is frequent.
* ``depthwise``  groups == C, multiplier 1/2 (rarely 3); ~55 % FBGEMM depthwise
                 fast-path shapes (G % 8 == 0, k in {3,5,7}, pad (k-1)/2,
                 strides in {1,2}), the rest near misses and other shapes.
* ``groupwise``  ~65 % IC/G == OC/G in {2,4,8,16}, 3x3, pad 1, stride 1/2, many
                 groups (8..128, a few > 100 so x86 must use FBGEMM; weights <= 12k values), the rest
                 other grouped convs.
* ``large``      groups 1, 32..256 input channels, 8..64 output channels, 1x1 /
                 3x3 / 5x5, K up to 6400 (several FBGEMM K blocks), N = 1,
                 weights <= 32k values where possible.
* ``realistic``  like ``mixed`` with groups 1 but activations near their zero
                 point and narrow weights (what a calibrated model produces).

Geometries that would make FBGEMM's groupwise kernel run past its last group
(groupwise-eligible shape with G not a multiple of G_together, for either the
AVX2 or the AVX-512 value) are redrawn: FBGEMM returns garbage for them and
corrupts the heap (see ``groupwise_tail_bug``).

Each case's random state is ``numpy.random.default_rng([seed, family#, index])``,
so a case depends only on (family, seed, index), never on ``--count`` or the
ISA.  Ids are ``pytorch-<family>-<isa>-<seed>-<index:04d>``.

Usage
-----
    /work/venv/bin/python tools/golden/gen_pytorch.py \\
        --family saturating --count 100 --seed 9001 --isa avx2 \\
        --out /work/unseen/pytorch-saturating-avx2-9001.jsonl.gz

Requires torch (2.15.0 was used) and numpy.  Self-contained: no other file of
the repository is needed.
"""

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import time
import warnings

FAMILIES = ["mixed", "saturating", "depthwise", "groupwise", "large", "realistic"]
ISA_ENV = {"avx2": "AVX2", "avx512": "AVX512", "avx512-vnni": None}
ISA_CPU_FLAGS = {
    "avx2": {"avx2", "fma"},
    "avx512": {"avx512f", "avx512bw", "avx512dq", "avx512vl"},
    "avx512-vnni": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"},
}
ENGINES = ["fbgemm", "x86", "qnnpack"]

# Filled in by main() after FBGEMM_ENABLE_INSTRUCTIONS has been set.
torch = None
F = None
np = None
nnq = None
nniq = None


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------

def cpu_flags():
    """The flag set of the first processor in /proc/cpuinfo (empty if unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def f32(x):
    """The float32 nearest to x, as a Python float (the exact double of that float32)."""
    return float(np.float32(x))


def log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def first_line(exc):
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line


# ----------------------------------------------------------------------------
# geometry per family
# ----------------------------------------------------------------------------

MIXED_KERNELS = [((3, 3), 31), ((1, 1), 17), ((2, 2), 14), ((5, 5), 10), ((7, 7), 9),
                 ((1, 3), 3), ((3, 1), 2), ((1, 2), 3), ((2, 1), 1), ((1, 5), 2), ((5, 1), 1),
                 ((7, 3), 2), ((3, 7), 1), ((5, 3), 2), ((3, 5), 2), ((7, 1), 1), ((2, 5), 1),
                 ((5, 2), 1), ((3, 2), 1), ((2, 3), 1), ((7, 2), 1), ((7, 5), 1)]
MIXED_STRIDES = [((1, 1), 50), ((2, 2), 17), ((3, 3), 15), ((1, 2), 7), ((2, 1), 5),
                 ((3, 1), 3), ((3, 2), 2), ((1, 3), 1)]


def pick(rng, table):
    """Weighted choice from [(value, weight), ...]."""
    weights = np.array([w for _, w in table], dtype=np.float64)
    i = rng.choice(len(table), p=weights / weights.sum())
    return table[i][0]


def pick_padding(rng, k, d):
    """Padding for one dimension: none, 'same'-like, or random."""
    same = d * (k - 1) // 2
    r = rng.random()
    if r < 0.35:
        return 0
    if r < 0.80:
        return same
    return int(rng.integers(0, same + 2))


def fit_spatial(rng, spec, lo, hi):
    """Draw H, W in [lo, hi] until the output has at least one pixel."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    for _ in range(200):
        H = int(rng.integers(lo, hi + 1))
        W = int(rng.integers(lo, hi + 1))
        if out_size(H, kh, sh, ph, dh) >= 1 and out_size(W, kw, sw, pw, dw) >= 1:
            spec["H"], spec["W"] = H, W
            return True
    # fall back to the smallest input that works
    H = max(lo, dh * (kh - 1) + 1 - 2 * ph, 1)
    W = max(lo, dw * (kw - 1) + 1 - 2 * pw, 1)
    spec["H"], spec["W"] = H, W
    return out_size(H, kh, sh, ph, dh) >= 1 and out_size(W, kw, sw, pw, dw) >= 1


def shrink_to_budget(spec, max_in, max_out):
    """Reduce H, W until input and output element counts fit the size budget."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    while True:
        H, W = spec["H"], spec["W"]
        n_in = spec["N"] * spec["C"] * H * W
        n_out = spec["N"] * spec["OC"] * out_size(H, kh, sh, ph, dh) * out_size(W, kw, sw, pw, dw)
        if n_in <= max_in and n_out <= max_out:
            return
        # shrink the larger side, but keep at least one output pixel
        if H >= W and out_size(H - 1, kh, sh, ph, dh) >= 1 and H > 1:
            spec["H"] = H - 1
        elif out_size(W - 1, kw, sw, pw, dw) >= 1 and W > 1:
            spec["W"] = W - 1
        elif out_size(H - 1, kh, sh, ph, dh) >= 1 and H > 1:
            spec["H"] = H - 1
        elif spec["N"] > 1:
            spec["N"] = 1
        else:
            return


def base_spec(rng, family):
    """Fields common to all families: batch, quantization options, data modes."""
    per_channel_p, bias_p, relu_p = 0.37, 0.6, 0.2
    if family == "depthwise":
        relu_p, bias_p = 0.33, 0.56
    elif family == "large":
        relu_p, bias_p = 0.3, 0.7
    spec = {
        "N": 1 if rng.random() < 0.77 else 2,
        "per_channel": bool(rng.random() < per_channel_p),
        "bias": bool(rng.random() < bias_p),
        "relu": bool(rng.random() < relu_p),
    }
    # activation / weight value modes, per family (shares from the corpus)
    if family == "saturating":
        spec["in_mode"] = "full" if rng.random() < 0.57 else "hi128"
        spec["w_mode"] = "full"
    elif family == "realistic":
        spec["in_mode"] = "nearzp"
        spec["w_mode"] = "normal"
    else:
        shares = {  # (nearzp, hi128, full), P(full weights | stressed input), P(full | nearzp)
            "mixed": ((0.55, 0.28, 0.17), 0.75, 0.12),
            "depthwise": ((0.52, 0.27, 0.21), 0.75, 0.15),
            "groupwise": ((0.61, 0.24, 0.15), 0.65, 0.08),
            "large": ((0.60, 0.13, 0.27), 0.8, 0.15),
        }[family]
        (p_near, p_hi, _), p_wfull_stress, p_wfull_near = shares
        r = rng.random()
        spec["in_mode"] = "nearzp" if r < p_near else ("hi128" if r < p_near + p_hi else "full")
        p = p_wfull_near if spec["in_mode"] == "nearzp" else p_wfull_stress
        spec["w_mode"] = "full" if rng.random() < p else "normal"
    return spec


def geometry_generic(rng, spec, groups_p, c_max, oc_max, hw_max, budget):
    spec["kernel"] = pick(rng, MIXED_KERNELS)
    spec["stride"] = pick(rng, MIXED_STRIDES)
    spec["dilation"] = (2, 2) if rng.random() < 0.16 else (1, 1)
    kh, kw = spec["kernel"]
    dh, dw = spec["dilation"]
    if rng.random() < 0.85:
        p = pick_padding(rng, max(kh, kw), dh)
        spec["padding"] = (p, p) if kh == kw else (pick_padding(rng, kh, dh), pick_padding(rng, kw, dw))
    else:
        spec["padding"] = (pick_padding(rng, kh, dh), pick_padding(rng, kw, dw))
    if rng.random() < groups_p:
        G = int(rng.integers(2, 17))
        cg = int(rng.integers(1, max(2, c_max // G) + 1))
        ocg = int(rng.integers(1, max(2, 24 // G) + 1))
        if rng.random() < 0.2:
            cg = 1  # depthwise-like members of the mixed family
        spec.update(groups=G, C=G * cg, OC=G * ocg)
    else:
        spec.update(groups=1, C=int(rng.integers(1, c_max + 1)), OC=int(rng.integers(1, oc_max + 1)))
    fit_spatial(rng, spec, 1 if rng.random() < 0.1 else 2, hw_max)
    shrink_to_budget(spec, *budget)


def geometry_depthwise(rng, spec):
    mult = 1 if rng.random() < 0.62 else (2 if rng.random() < 0.9 else 3)
    fast = rng.random() < 0.55
    if fast:
        G = int(rng.choice([8, 8, 16, 16, 24, 32, 40, 48, 64]))
        k = int(rng.choice([3, 5, 7]))
        s = pick(rng, [((1, 1), 45), ((2, 2), 40), ((1, 2), 8), ((2, 1), 7)])
        spec.update(kernel=(k, k), stride=s, padding=((k - 1) // 2, (k - 1) // 2), dilation=(1, 1))
        # some near misses: a single fast-path condition broken
        miss = rng.random()
        if miss < 0.08:
            spec["padding"] = (0, 0)
        elif miss < 0.14:
            spec["dilation"] = (2, 2)
        elif miss < 0.20:
            spec["stride"] = (3, 3)
        elif miss < 0.26:
            G = int(rng.choice([4, 12, 20, 6]))
    else:
        G = int(rng.integers(1, 17))
        k = pick(rng, [((7, 7), 25), ((3, 3), 25), ((5, 5), 20), ((1, 1), 20), ((3, 5), 4), ((5, 3), 3), ((1, 3), 3)])
        spec["kernel"] = k
        spec["stride"] = pick(rng, [((1, 1), 45), ((2, 2), 20), ((3, 3), 18), ((1, 2), 8), ((3, 2), 4), ((2, 1), 3), ((3, 1), 2)])
        spec["dilation"] = (2, 2) if rng.random() < 0.3 else (1, 1)
        kh, kw = k
        if rng.random() < 0.8:
            spec["padding"] = (pick_padding(rng, kh, spec["dilation"][0]),) * 2 if kh == kw else \
                (pick_padding(rng, kh, spec["dilation"][0]), pick_padding(rng, kw, spec["dilation"][1]))
        else:
            spec["padding"] = (int(rng.integers(0, kh + 1)), int(rng.integers(0, kw + 1)))
    spec.update(groups=G, C=G, OC=G * mult)
    fit_spatial(rng, spec, 1 if rng.random() < 0.08 else 3, 20)
    shrink_to_budget(spec, 3000, 3000)


def geometry_groupwise(rng, spec):
    if rng.random() < 0.65:
        cg = int(rng.choice([2, 4, 8, 16]))
        r = rng.random()
        if r < 0.07:
            G = int(rng.choice([104, 112, 128]))  # > 100 groups: x86 cannot use oneDNN
            cg = 2
        elif r < 0.20:
            G = int(rng.choice([1, 2, 3, 4, 6, 12]))  # below G_together or G % 8 != 0
        else:
            G = int(rng.choice([8, 8, 16, 16, 24, 32, 48, 64]))
        while G * cg > 256 or G * cg * cg * 9 > 12000:  # size budget
            if G > 8 and G % 16 == 0:
                G //= 2
            else:
                cg //= 2
        s = (1, 1) if rng.random() < 0.5 else (2, 2)
        spec.update(kernel=(3, 3), stride=s, padding=(1, 1), dilation=(1, 1), groups=G, C=G * cg, OC=G * cg)
        if rng.random() < 0.06:
            spec["stride"] = (1, 2)  # unequal strides: not the groupwise fast path
    else:
        G = int(rng.integers(2, 13))
        cg = int(rng.integers(1, 13))
        ocg = int(rng.integers(1, 13))
        if rng.random() < 0.3:
            ocg = 2 * cg
        spec["kernel"] = pick(rng, [((3, 3), 40), ((1, 1), 25), ((5, 5), 15), ((2, 2), 8), ((1, 3), 6), ((3, 1), 6)])
        kh, kw = spec["kernel"]
        while G > 2 and G * ocg * cg * kh * kw > 12000:  # size budget
            G -= 1
        spec.update(groups=G, C=G * cg, OC=G * ocg)
        spec["stride"] = pick(rng, [((1, 1), 50), ((2, 2), 35), ((3, 3), 10), ((1, 2), 5)])
        spec["dilation"] = (2, 2) if rng.random() < 0.12 else (1, 1)
        kh, kw = spec["kernel"]
        spec["padding"] = (pick_padding(rng, kh, spec["dilation"][0]), pick_padding(rng, kw, spec["dilation"][1]))
    fit_spatial(rng, spec, 3, 11)
    shrink_to_budget(spec, 2500, 2500)


def geometry_large(rng, spec):
    spec["N"] = 1
    C = int(rng.choice([32, 64, 96, 128, 256]))
    OC = int(rng.choice([8, 16, 32, 64]))
    k = pick(rng, [(3, 45), (5, 33), (1, 22)])
    s = 1 if rng.random() < 0.6 else 2
    spec.update(groups=1, C=C, OC=OC, kernel=(k, k), stride=(s, s), padding=((k - 1) // 2,) * 2, dilation=(1, 1))
    # keep weights <= ~48k values: drop output channels for big K
    while OC * C * k * k > 32000 and OC > 8:
        OC //= 2
    spec["OC"] = OC
    fit_spatial(rng, spec, 1, 10)
    shrink_to_budget(spec, 6000, 2500)


def make_spec(rng, family):
    """Draw a geometry; redraw the (rare) ones that hit FBGEMM's groupwise tail bug."""
    for _ in range(100):
        spec = draw_spec(rng, family)
        if not any(groupwise_tail_bug(spec, width) for width in (32, 64)):
            return spec
    raise RuntimeError("could not draw a usable geometry")


def draw_spec(rng, family):
    spec = base_spec(rng, family)
    if family == "mixed":
        geometry_generic(rng, spec, groups_p=0.26, c_max=20, oc_max=16, hw_max=12, budget=(3000, 3000))
    elif family in ("saturating", "realistic"):
        geometry_generic(rng, spec, groups_p=0.0, c_max=19, oc_max=11, hw_max=14, budget=(3000, 3000))
    elif family == "depthwise":
        geometry_depthwise(rng, spec)
    elif family == "groupwise":
        geometry_groupwise(rng, spec)
    elif family == "large":
        geometry_large(rng, spec)
    else:
        raise ValueError(family)
    return spec


# ----------------------------------------------------------------------------
# rules (for the extra source keys)
# ----------------------------------------------------------------------------

def g_together(spec, width):
    """PackWeightMatrixForGConv::numOfGroupsTogether for a vector width of 32 or 64 bytes."""
    cg, ocg = spec["C"] // spec["groups"], spec["OC"] // spec["groups"]
    return max(width // ocg // max(cg, 4), 1)


def is_groupwise_shape(spec, width):
    """fbgemmOptimizedGConv: IC/G == OC/G in {2,4,8,16}, G >= G_together, 3x3, pad 1, dil 1, stride 1|2."""
    G, cg, ocg = spec["groups"], spec["C"] // spec["groups"], spec["OC"] // spec["groups"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    return (cg == ocg and cg in (2, 4, 8, 16) and G >= g_together(spec, width) and kh == kw == 3
            and ph == pw == 1 and dh == dw == 1 and sh == sw and sh in (1, 2))


def groupwise_tail_bug(spec, width):
    """True when FBGEMM's groupwise kernel would run past the last group.

    fbgemmGroupwiseConv walks the groups G_together at a time with no tail handling, so a
    groupwise-path conv whose G is not a multiple of G_together (e.g. IC/G = 2 with G = 10
    or 12 on an AVX-512 CPU, IC/G = 4 with G = 6) reads and writes past its buffers: fbgemm
    (and x86 when it routes to fbgemm) returns garbage and the heap gets corrupted
    ("double free or corruption").  Such geometries are never generated.
    """
    return is_groupwise_shape(spec, width) and spec["groups"] % g_together(spec, width) != 0


def fbgemm_path(spec, host_avx512):
    """FBGEMM's kernel choice (FbgemmConv.cc ConvFastPath order), derived from the geometry.

    The groupwise test needs G >= G_together (PackWeightMatrixForGConv::numOfGroupsTogether),
    which uses a 64-byte vector width when cpuinfo reports AVX-512 (F/BW/DQ/VL) and 32
    otherwise.  That check asks cpuinfo directly, so FBGEMM_ENABLE_INSTRUCTIONS does not
    change it: `host_avx512` is the CPU's own answer.
    """
    G, C, OC = spec["groups"], spec["C"], spec["OC"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    if (G == C and OC in (G, 2 * G) and G % 8 == 0 and sh in (1, 2) and sw in (1, 2)
            and kh == kw and kh in (3, 5, 7) and dh == dw == 1 and ph == pw == (kh - 1) // 2):
        return "depthwise"
    if is_groupwise_shape(spec, 64 if host_avx512 else 32):  # simd_info<avx512|avx2>::WIDTH_BYTES
        return "groupwise"
    if kh == kw == 1 and sh == sw == 1 and dh == dw == 1 and ph == pw == 0:
        return "pointwise"
    return "im2col"


def fbgemm_accumulation(path, isa, host_vnni):
    """Whether FBGEMM's int32 accumulator saturates int16 pairs (vpmaddubsw) or is exact.

    * depthwise: an AVX2-only JIT on every CPU -> always saturating;
    * groupwise: the JIT picks its kernel with fbgemmHasAvx512VnniSupport(), i.e. cpuinfo,
      ignoring FBGEMM_ENABLE_INSTRUCTIONS -> exact whenever the CPU has AVX-512-VNNI;
    * im2col / pointwise GEMM: follows fbgemmInstructionSet(), which honours the override
      -> exact only for isa avx512-vnni.
    """
    if path == "depthwise":
        return "saturating"
    if path == "groupwise":
        return "exact" if host_vnni else "saturating"
    return "exact" if isa == "avx512-vnni" else "saturating"


def host_artifacts(isa, path, x86_route, host_vnni):
    """Engines whose result on this host is not what a real `isa` machine would return.

    FBGEMM_ENABLE_INSTRUCTIONS lowers the ISA of FBGEMM's GEMM kernels only. On a host with
    AVX-512-VNNI, a case labelled avx2 or avx512 would still get (a) the groupwise kernel's exact
    VNNI accumulation, and (b) the x86 engine's oneDNN route, which PyTorch picks from the CPU's
    own flags. Those results are dropped from `expected` (and recorded under `source.omitted`)
    rather than mislabelled.
    """
    if not host_vnni or isa == "avx512-vnni":
        return {}
    omitted = {}
    if path == "groupwise":
        why = ("the host has AVX-512-VNNI and FBGEMM's groupwise kernel ignores "
               "FBGEMM_ENABLE_INSTRUCTIONS, so this result is not the %s one" % isa)
        omitted["fbgemm"] = why
        if x86_route == "fbgemm":
            omitted["x86"] = why
    if x86_route == "onednn":
        omitted["x86"] = ("the host has AVX-512-VNNI, so PyTorch sent x86 to oneDNN; an %s "
                          "machine routes it to FBGEMM" % isa)
    return omitted


def x86_route_rule(spec, w_zps, has_vnni):
    """PyTorch's should_use_onednn_quant (qconv prepack for the x86 engine)."""
    symmetric = all(z == 0 for z in w_zps)
    return "onednn" if (has_vnni and spec["groups"] <= 100 and symmetric) else "fbgemm"


# ----------------------------------------------------------------------------
# data, quantization parameters
# ----------------------------------------------------------------------------

def draw_activation(rng, shape, mode):
    if mode == "nearzp":
        zp = int(rng.integers(0, 256))
        sd = rng.uniform(15, 35)
        data = np.clip(np.rint(rng.normal(zp, sd, size=shape)), 0, 255)
    elif mode == "hi128":
        zp = int(rng.integers(0, 65))
        data = rng.integers(128, 256, size=shape)
    else:
        zp = int(rng.integers(0, 65))
        data = rng.integers(0, 256, size=shape)
    return data.astype(np.uint8), zp


def draw_weight_zps(rng, n):
    """Weight zero points: ~60 % symmetric (all 0)."""
    r = rng.random()
    if r < 0.6:
        return [0] * n
    if n == 1 or r < 0.8:
        z = 0
        while z == 0:
            z = int(rng.integers(-20, 21))
        return [z] * n
    return [int(z) for z in rng.integers(-20, 21, size=n)]


def draw_weight(rng, shape, mode, zps, per_channel):
    OC = shape[0]
    zcol = np.array(zps if per_channel else zps * OC, dtype=np.int64).reshape(OC, 1, 1, 1)
    if mode == "full":
        data = rng.integers(-128, 128, size=shape)
    else:
        sd = rng.uniform(12, 32)
        data = np.clip(np.rint(rng.normal(0.0, sd, size=shape)) + zcol, -128, 127)
    return data.astype(np.int8)


def make_case_tensors(rng, spec):
    N, C, H, W, OC, G = spec["N"], spec["C"], spec["H"], spec["W"], spec["OC"], spec["groups"]
    kh, kw = spec["kernel"]
    x_int, a_zp = draw_activation(rng, (N, C, H, W), spec["in_mode"])
    a_scale = f32(log_uniform(rng, 1e-3, 0.1))
    n_w = OC if spec["per_channel"] else 1
    base = log_uniform(rng, 1e-4, 0.032)
    if spec["per_channel"]:
        spread = rng.uniform(0.0, 1.2)
        w_scales = [f32(min(max(base * math.exp(rng.uniform(-spread, spread)), 1e-4), 0.032)) for _ in range(OC)]
    else:
        w_scales = [f32(base)]
    w_zps = draw_weight_zps(rng, n_w)
    w_int = draw_weight(rng, (OC, C // G, kh, kw), spec["w_mode"], w_zps, spec["per_channel"])
    return x_int, a_scale, a_zp, w_int, w_scales, w_zps


def quantized_tensors(x_int, a_scale, a_zp, w_int, w_scales, w_zps, per_channel):
    x_q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_int.copy()), a_scale, a_zp)
    w_t = torch.from_numpy(w_int.copy())
    if per_channel:
        w_q = torch._make_per_channel_quantized_tensor(
            w_t, torch.tensor(w_scales, dtype=torch.float64), torch.tensor(w_zps, dtype=torch.int64), 0)
    else:
        w_q = torch._make_per_tensor_quantized_tensor(w_t, w_scales[0], w_zps[0])
    return x_q, w_q


def float_conv(spec, x_q, w_q, bias_t):
    y = F.conv2d(x_q.dequantize(), w_q.dequantize(), bias_t, spec["stride"], spec["padding"],
                 spec["dilation"], spec["groups"])
    if spec["relu"]:
        y = torch.relu(y)
    return y


def choose_bias(rng, spec, x_q, w_q):
    if not spec["bias"]:
        return None
    y0 = float_conv(dict(spec, relu=False), x_q, w_q, None)
    sd = float(y0.std()) if y0.numel() > 1 else float(y0.abs().mean())
    if not math.isfinite(sd) or sd == 0.0:
        sd = x_q.q_scale() * float(w_q.dequantize().abs().max() + 1e-6) * 10
    factor = rng.uniform(0.2, 1.2) * (5.0 if rng.random() < 0.05 else 1.0)
    b = rng.normal(0.0, sd * factor, size=spec["OC"]).astype(np.float32)
    return b


def choose_output(rng, spec, y):
    lo, hi = float(y.min()), float(y.max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    rng_span = (hi - lo) / 255.0
    if not (rng_span > 0.0):
        rng_span = 1e-3
    y_scale = f32(max(rng_span * log_uniform(rng, 0.5, 3.5), 1e-6))
    if spec["relu"]:
        y_zp = int(rng.integers(0, 65)) if rng.random() < 0.6 else 0
    else:
        y_zp = int(np.clip(round(-lo / y_scale + rng.normal(0.0, 10.0)), 0, 255))
    return y_scale, y_zp


# ----------------------------------------------------------------------------
# running the engines
# ----------------------------------------------------------------------------

def build_module(spec, w_q, bias_t, y_scale, y_zp):
    cls = nniq.ConvReLU2d if spec["relu"] else nnq.Conv2d
    m = cls(spec["C"], spec["OC"], spec["kernel"], stride=spec["stride"], padding=spec["padding"],
            dilation=spec["dilation"], groups=spec["groups"], bias=True)
    m.set_weight_bias(w_q, bias_t)
    m.scale = y_scale
    m.zero_point = y_zp
    return m


class OnednnLog:
    """Capture oneDNN's verbose lines (written to fd 1 by C code) around a call."""

    def __init__(self):
        self.lines = []

    def __enter__(self):
        sys.stdout.flush()
        self._saved = os.dup(1)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 1)
        self._ctx = torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self._ctx.__exit__(*exc)
        finally:
            sys.stdout.flush()
            os.dup2(self._saved, 1)
            os.close(self._saved)
            self._tmp.seek(0)
            self.lines = self._tmp.read().decode(errors="replace").splitlines()
            self._tmp.close()
        return False

    def conv_impls(self):
        out = []
        for line in self.lines:
            parts = line.split(",")
            if len(parts) > 6 and parts[2] == "primitive" and parts[3] == "exec" and parts[5] == "convolution":
                out.append(parts[6])
        return out


def run_engine(engine, spec, x_q, w_q, bias_t, y_scale, y_zp):
    """Returns (output ints, onednn conv impls seen during forward or None)."""
    torch.backends.quantized.engine = engine
    m = build_module(spec, w_q, bias_t, y_scale, y_zp)
    if engine == "x86":
        with OnednnLog() as log:
            y = m(x_q)
        impls = log.conv_impls()
    else:
        y, impls = m(x_q), None
    return y.int_repr().flatten().tolist(), impls


def generate_case(family, isa, seed, index, has_vnni, has_avx512, route_check, threads):
    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    spec = make_spec(rng, family)
    x_int, a_scale, a_zp, w_int, w_scales, w_zps = make_case_tensors(rng, spec)
    x_q, w_q = quantized_tensors(x_int, a_scale, a_zp, w_int, w_scales, w_zps, spec["per_channel"])
    bias = choose_bias(rng, spec, x_q, w_q)
    bias_t = None if bias is None else torch.from_numpy(bias)
    y_float = float_conv(spec, x_q, w_q, bias_t)
    y_scale, y_zp = choose_output(rng, spec, y_float)

    expected, errors = {}, {}
    route, impl = None, None
    for engine in ENGINES:
        try:
            out, impls = run_engine(engine, spec, x_q, w_q, bias_t, y_scale, y_zp)
            expected[engine] = out
            if engine == "x86":
                route = "onednn" if impls else "fbgemm"
                impl = impls[0] if impls else None
        except Exception as exc:  # the engine refused these parameters
            errors[engine] = first_line(exc)
    try:
        fq = torch.quantize_per_tensor(y_float, y_scale, y_zp, torch.quint8)
        expected["float_path"] = fq.int_repr().flatten().tolist()
    except Exception as exc:
        errors["float_path"] = first_line(exc)

    rule = x86_route_rule(spec, w_zps, has_vnni)
    if route is not None and route != rule:
        msg = f"case {family}/{seed}/{index}: x86 route observed {route}, rule says {rule}"
        if route_check:
            raise SystemExit(msg)
        print("WARNING: " + msg, file=sys.stderr)

    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    OH, OW = out_size(spec["H"], kh, sh, ph, dh), out_size(spec["W"], kw, sw, pw, dw)
    path = fbgemm_path(spec, has_avx512)
    source = {
        "framework": "pytorch",
        "version": torch.__version__,
        "isa": isa,
        "family": family,
        "seed": seed,
        "index": index,
        "generator": "tools/golden/gen_pytorch.py",
        "fbgemm_enable_instructions": ISA_ENV[isa],
        "threads": threads,
        "fbgemm_path": path,
        "fbgemm_accumulation": fbgemm_accumulation(path, isa, has_vnni),
        "x86_route": route if route is not None else rule,
    }
    if route is None:
        source["x86_route_observed"] = False
    omitted = host_artifacts(isa, path, source["x86_route"], has_vnni)
    for engine, reason in omitted.items():
        expected.pop(engine, None)
        errors.pop(engine, None)
    if omitted:
        source["omitted"] = omitted
    if impl is not None:
        source["x86_onednn_impl"] = impl
    case = {
        "id": f"pytorch-{family}-{isa}-{seed}-{index:04d}",
        "source": source,
        "conv": {"kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "dilation": [dh, dw],
                 "groups": spec["groups"]},
        "input": {"dtype": "uint8", "shape": [spec["N"], spec["C"], spec["H"], spec["W"]], "scale": a_scale,
                  "zero_point": a_zp, "data": x_int.flatten().tolist()},
        "weight": {"dtype": "int8", "shape": list(w_int.shape), "axis": 0 if spec["per_channel"] else None,
                   "scale": w_scales, "zero_point": w_zps, "data": w_int.flatten().tolist()},
        "bias": None if bias is None else {"dtype": "float32", "data": [float(b) for b in bias]},
        "relu": spec["relu"],
        "output": {"dtype": "uint8", "scale": y_scale, "zero_point": y_zp, "shape": [spec["N"], spec["OC"], OH, OW]},
        "expected": expected,
    }
    if errors:
        case["errors"] = errors
    return case


# ----------------------------------------------------------------------------
# self check: the forum seed conv (FORMAT.md, notes section 8)
# ----------------------------------------------------------------------------

SEED_WEIGHT = [9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31,
               50, 48, 23, -3, 64, -87, -91]


def seed_case_fbgemm():
    torch.backends.quantized.engine = "fbgemm"
    x = torch._make_per_tensor_quantized_tensor(torch.full((1, 1, 5, 5), 200, dtype=torch.uint8), 0.012728, 33)
    w = torch._make_per_tensor_quantized_tensor(torch.tensor(SEED_WEIGHT, dtype=torch.int8).reshape(1, 1, 5, 5),
                                                0.00292, -11)
    m = nnq.Conv2d(1, 1, 5)
    m.set_weight_bias(w, torch.zeros(1))
    m.scale, m.zero_point = 0.02091, 0
    return int(m(x).int_repr().item())


# ----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--isa", required=True, choices=list(ISA_ENV))
    p.add_argument("--out", required=True, help="output FILE.jsonl.gz")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--no-selfcheck", action="store_true", help="skip the seed-case ISA check")
    p.add_argument("--no-route-check", action="store_true",
                   help="warn instead of stopping when the observed x86 route contradicts the rule")
    return p.parse_args(argv)


def main(argv=None):
    global torch, F, np, nnq, nniq
    args = parse_args(argv)

    flags = cpu_flags()
    missing = ISA_CPU_FLAGS[args.isa] - flags
    if flags and missing:
        raise SystemExit(f"--isa {args.isa}: this CPU lacks {sorted(missing)}")
    if "torch" in sys.modules:
        raise SystemExit("torch was imported before FBGEMM_ENABLE_INSTRUCTIONS could be set")
    env = ISA_ENV[args.isa]
    if env is None:
        os.environ.pop("FBGEMM_ENABLE_INSTRUCTIONS", None)
    else:
        os.environ["FBGEMM_ENABLE_INSTRUCTIONS"] = env

    warnings.filterwarnings("ignore")
    import numpy
    import torch as _torch
    import torch.nn.functional as _F
    import torch.ao.nn.quantized as _nnq
    import torch.ao.nn.intrinsic.quantized as _nniq
    np, torch, F, nnq, nniq = numpy, _torch, _F, _nnq, _nniq
    torch.set_num_threads(args.threads)
    has_vnni = "avx512_vnni" in flags
    has_avx512 = ISA_CPU_FLAGS["avx512"] <= flags

    if not args.no_selfcheck:
        got = seed_case_fbgemm()
        want = 0 if args.isa == "avx512-vnni" else 7
        if got != want:
            raise SystemExit(f"ISA self check failed: fbgemm seed case gave {got}, expected {want} "
                             f"for --isa {args.isa} (FBGEMM_ENABLE_INSTRUCTIONS={env})")
        print(f"self check: fbgemm seed case = {got} (isa {args.isa})", file=sys.stderr)

    t0 = time.time()
    n_err, routes, paths, accs = 0, {}, {}, {}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp_out = args.out + ".part"
    with gzip.open(tmp_out, "wt", encoding="utf-8") as f:
        for i in range(args.start, args.start + args.count):
            case = generate_case(args.family, args.isa, args.seed, i, has_vnni, has_avx512,
                                 not args.no_route_check, args.threads)
            f.write(json.dumps(case) + "\n")
            n_err += bool(case.get("errors"))
            r, pth = case["source"]["x86_route"], case["source"]["fbgemm_path"]
            routes[r] = routes.get(r, 0) + 1
            paths[pth] = paths.get(pth, 0) + 1
            acc = case["source"]["fbgemm_accumulation"]
            accs[acc] = accs.get(acc, 0) + 1
    os.replace(tmp_out, args.out)
    print(f"wrote {args.count} cases to {args.out} in {time.time() - t0:.1f} s; "
          f"cases with errors: {n_err}; x86 routes: {routes}; fbgemm paths: {paths}; "
          f"fbgemm accumulation: {accs}", file=sys.stderr)


if __name__ == "__main__":
    main()

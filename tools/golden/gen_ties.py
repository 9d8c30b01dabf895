#!/usr/bin/env python3
"""Tie-targeted PyTorch golden cases for quantized Conv2d (qconv's golden format).

Why
---
Random golden cases almost never put a requantized value within a float32 ulp of a
rounding boundary (k + 0.5), so they cannot tell apart two requantization formulas that
differ by a single float rounding (a fused multiply-add versus a multiply then an add, a
reciprocal versus a division, the zero point added before or after rounding, ...).  This
script builds cases whose biases and scales are *chosen* so that many output elements sit
on, or within an ulp of, such a boundary, runs the real PyTorch engines on them, and
records the integers the engines return -- in the format of shared/golden/FORMAT.md, like
gen_pytorch.py, with ``source.family = "ties"``.

How a case is built
-------------------
1. A small random layer of the FBGEMM / QNNPACK / oneDNN path under test is drawn, with
   data that cannot saturate anywhere: raw (u8 domain) activations 0..255 times raw s8
   weights in [-64, 63], so no pair a0*w0 + a1*w1 can exceed 32767 and FBGEMM's int16
   pair accumulation (vpmaddubsw) is exact.  The accumulator of every output element,
   ``raw = sum (a - a_zp)(w - w_zp)`` (padding taps are a = a_zp), is computed exactly in
   numpy.
2. Each question below has a set of *candidate formulas* (one "model" and its
   alternatives) mapping (raw, bias, scales) to the output integer, emulated bit-exactly
   with float32 numpy arithmetic (correctly rounded, ties to even) and an exact float32
   FMA (float64 product + TwoSum + midpoint correction).
3. Per output channel the bias is picked from a pool of values around ones that put some
   element exactly on a tie (computed in exact arithmetic, then every float32 within a few
   dozen ulps), choosing the one for which the most alternatives disagree with the model on
   the most elements of that channel (greedily spreading coverage over alternatives).
   "Structured" designs instead use power-of-two scales and weights that are multiples of
   an odd c, which makes about half of all elements exact ties (see ``design_structured``).
4. The real engines run through PyTorch exactly as gen_pytorch.py runs them (fbgemm, x86,
   qnnpack modules; the float path = dequantize, F.conv2d, quantize_per_tensor), and the
   results are written as a golden case.

Questions (``source.question``; candidate names in ``source.candidates``, the design
reference first)
-----------------------------------------------------------------------------------------
Notation: si = f32(input scale), sw = f32(weight scale[oc]), so = f32(output scale),
atws = f32(si*sw), M = f32(atws/so), rcp = f32(1.0 / (double)atws) (equal to f32(1.0f/atws)
for every scale drawn here), output y = clamp(rint(s) + zp, relu ? zp : 0, 255).

Q1  FBGEMM, per-tensor weights, float bias (fbgemm; x86 when it routes to FBGEMM), for each
    FBGEMM path (im2col, pointwise, depthwise, groupwise):
      fma_rcp      s = f32(fma(b, rcp, f32(raw)) * M)                   [brief's model, reference]
      add_mul_rcp  s = f32(f32(f32(raw) + f32(b*rcp)) * M)
      add_div      s = f32(f32(f32(raw) + f32(b/atws)) * M)
      fma_div      s = f32(f32(raw + b/atws) * M), one rounding of the sum (b/atws in double)
    Finding: im2col, pointwise and groupwise follow fma_rcp; the depthwise kernel follows
    add_mul_rcp (no contraction), on both ISAs.
Q2  FBGEMM, per-channel weights, float bias: same candidates, reference ``add_div``
    (every path follows it).
Q3  qnnpack: acc = raw + bias_q, s = f32(f32(acc) * S)
      model        bias_q = rint(f32(b * f32(1/f32(sw_d*si_d)))), S = f32(atws * f32(1/so))
      mult_div     S = f32(atws / so)
      bias_div     bias_q = rint(f32(b / f32(sw_d*si_d)))
      bias_double  bias_q = rint(b / (sw_d*si_d)) in double
      float_bias   no integer bias: s = f32(f32(f32(raw) + f32(b/atws)) * S)
    Finding: model.
Q4  x86 routed to oneDNN (symmetric weights, groups <= 100, AVX-512-VNNI host).  ideep hands
    oneDNN the source scale si_e = f32(1.0f / f32(1.0/si)) and the output scale
    so_e = f32(1.0f / f32(1.0/so)); f32(1/so_e) == f32(1/so) always, so only a division by
    so_e could show the output round trip.
      two_step          d = f32(f32(f32(f32(raw)*si_e)*sw) + b), ReLU max(d, 0),
                        t = f32(d*f32(1/so)), u = f32(t + zp), y = rint(clamp(u, 0, 255))
                        [reference: the formula these cases found]
      model             d = f32(f32(f32(raw)*f32(si*sw)) + b), rest as two_step  [brief's model]
      combined_ideep_src  d = f32(f32(f32(raw)*f32(si_e*sw)) + b)
      combined_fma_bias   d = fma(f32(raw), f32(si*sw), b)
      two_step_plain_si   two_step with si instead of si_e
      two_step_ws         f32(f32(raw*sw)*si_e): the weight scale first
      two_step_swe        the weight scale also through f32(1/f32(1/sw))
      two_step_fma_bias   d = fma(f32(raw*si_e), sw, b)
      two_step_div_so / two_step_div_so_e   t = f32(d / so) / f32(d / so_e)
      two_step_zp_after   y = rint(t) + zp (zero point after rounding)
      two_step_fma_zp     u = fma(d, f32(1/so), zp)
Q5  float path quantize_per_tensor (y = the float conv output PyTorch computed):
      model        q = rint(f32(y * f32(1/so))) + zp
      div          q = rint(f32(y / so)) + zp
      zp_float     q = rint(f32(f32(y * f32(1/so)) + zp))
      fma_zp       q = rint(fma(y, f32(1/so), zp))
    Finding: model.

Every case is also analysed: every engine that returned integers is compared with every
candidate of the question its path belongs to (fbgemm -> Q1/Q2, x86 -> Q1/Q2 or Q4 by
its observed route, qnnpack -> Q3, float_path -> Q5 evaluated on the float conv output
torch returned), whatever question the case was designed for.  Per (question, path,
engine) the script reports, for each candidate, on how many elements it differs from the
design reference (``disc``) and on how many it differs from the engine (``miss``); a candidate with
miss == 0 over many discriminating elements is the formula the engine follows.  The
analysis is written to ``--analysis`` (JSON) and printed.

Extra ``source`` keys (besides gen_pytorch.py's): ``family`` = "ties", ``question``,
``target`` (the question and path the case discriminates), ``design`` ("scan" or
"structured"), ``candidates`` (names, model first), ``predicted_discriminating``
(alternative -> number of elements where it differs from the model, from the emulation).

ISA handling is gen_pytorch.py's (its functions are imported): ``--isa avx2`` sets
FBGEMM_ENABLE_INSTRUCTIONS=AVX2 before torch is imported, ``avx512-vnni`` removes it; on a
VNNI host x86 results that went to oneDNN are dropped from avx2 files and recorded under
``source.omitted``.  Groupwise-path cases keep their fbgemm result in avx2 files (unlike
gen_pytorch.py): the data cannot saturate, so the accumulation is the same exact sum on any
ISA, but the groupwise requantization kernel is chosen with cpuinfo (AVX-512 on this host),
not with the override; ``source.groupwise_requant`` says so.  Q4 cases are only generated
for ``avx512-vnni`` (an AVX2 machine never routes x86 to oneDNN).

Usage
-----
    /work/venv/bin/python tools/golden/gen_ties.py --isa avx2 --seed 31 --count 20 \\
        --out /work/unseen3/pytorch-ties-avx2.jsonl.gz \\
        --analysis /work/research/ties-analysis-avx2.json

``--count`` is the number of cases per (question, path, design) combination.  Each case's
random state is ``numpy.random.default_rng([seed, combo#, index])``.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time
import warnings
from collections import OrderedDict, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ISA_ENV = {"avx2": "AVX2", "avx512-vnni": None}

np = None
torch = None
gp = None  # gen_pytorch, imported after FBGEMM_ENABLE_INSTRUCTIONS is set

# (question, path, design); paths are FBGEMM path names except "grouped" (a plain grouped
# conv) and "mixed" (a random choice of the others).
COMBOS = [
    ("Q1", "im2col", "scan"), ("Q1", "pointwise", "scan"), ("Q1", "depthwise", "scan"),
    ("Q1", "groupwise", "scan"),
    ("Q2", "im2col", "scan"), ("Q2", "pointwise", "scan"), ("Q2", "depthwise", "scan"),
    ("Q2", "groupwise", "scan"),
    ("Q3", "im2col", "structured"), ("Q3", "pointwise", "structured"),
    ("Q3", "depthwise", "structured"),
    ("Q4", "im2col", "scan"), ("Q4", "pointwise", "scan"), ("Q4", "depthwise", "scan"),
    ("Q4", "grouped", "scan"), ("Q4", "mixed", "structured"),
    ("Q5", "mixed", "structured"),
]
QUESTION_TITLES = {
    "Q1": "fbgemm-per-tensor-float-bias",
    "Q2": "fbgemm-per-channel-float-bias",
    "Q3": "qnnpack-bias-quantization-and-multiplier",
    "Q4": "x86-onednn-requantization",
    "Q5": "float-path-quantize-per-tensor",
}
# The model each question's brief names (the reference the designs aim at may differ: Q4's
# reference is the formula these cases found, see onednn_candidates).
BRIEF_MODEL = {"Q1": "fma_rcp", "Q2": "add_div", "Q3": "model", "Q4": "model", "Q5": "model"}
# Odd c whose float reciprocal f32(1/c) is off by more than 0.8 ulp/2 (|eps| > 0.8 * 2^-24):
# multiplying a tie x = k + 0.5 by that reciprocal leaves the tie for most x.
GOOD_C = [15, 61, 63]


# ----------------------------------------------------------------------------
# exact float32 arithmetic
# ----------------------------------------------------------------------------

def f32(x):
    """Round to the nearest float32 (ties to even), elementwise."""
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def fma32(a, b, c):
    """float32 fused multiply-add a*b + c with a single rounding, elementwise (exact).

    The product of two float32 values is exact in float64; the float64 sum is corrected
    with its TwoSum error term where it lands exactly on a float32 midpoint (the only case
    where rounding float64 -> float32 could differ from rounding the exact sum)."""
    a64 = np.asarray(a, np.float32).astype(np.float64)
    b64 = np.asarray(b, np.float32).astype(np.float64)
    c64 = np.asarray(c, np.float32).astype(np.float64)
    p = a64 * b64
    s = p + c64
    bb = s - p
    e = (p - (s - bb)) + (c64 - bb)
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    n = np.nextafter(r, toward)
    mid = (s != r64) & ((r64 + n.astype(np.float64)) * 0.5 == s) & (e != 0)
    if np.any(mid):
        hi, lo = np.maximum(r, n), np.minimum(r, n)
        r = np.where(mid, np.where(e > 0, hi, lo), r)
    return r


def rint_out(s, zp, lo, hi=255):
    """rint(s) + zp (s rounded ties-to-even), clamped to [lo, hi]; s may be huge."""
    v = np.rint(np.clip(np.asarray(s, np.float64), -1e9, 1e9))
    return np.clip(v + zp, lo, hi).astype(np.int64)


def rint_float(u, lo, hi=255):
    """rint(clamp(u, lo, hi)) for a value that already contains the zero point."""
    v = np.clip(np.asarray(u, np.float64), lo, hi)
    return np.rint(v).astype(np.int64)


def ulp_neighbours(x, J):
    """The float32 values within J ulps of f32(x) (same sign), as a float32 array."""
    x = np.float32(x)
    if not np.isfinite(x):
        return np.zeros(0, np.float32)
    bits = np.array([x], np.float32).view(np.int32)[0]
    out = (np.int64(bits) + np.arange(-J, J + 1)).astype(np.int32).view(np.float32)
    out = out[np.isfinite(out)]
    if x != 0:
        out = out[np.sign(out) == np.sign(x)]
    return out


# ----------------------------------------------------------------------------
# exact accumulators
# ----------------------------------------------------------------------------

def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def exact_raw(spec, x, a_zp, w, w_zp_oc):
    """Exact int64 accumulators sum (a - a_zp)(w - w_zp[oc]) (padding = a_zp), NCHW."""
    N, C, H, W = x.shape
    OC, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), G = spec["stride"], spec["padding"], spec["dilation"], spec["groups"]
    OH, OW = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
    xp = np.full((N, C, H + 2 * ph, W + 2 * pw), a_zp, np.int64)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    xa = xp - a_zp
    wa = w.astype(np.int64) - np.asarray(w_zp_oc, np.int64).reshape(OC, 1, 1, 1)
    ocg = OC // G
    out = np.zeros((N, OC, OH, OW), np.int64)
    for g in range(G):
        xs = xa[:, g * Cg:(g + 1) * Cg]
        ws = wa[g * ocg:(g + 1) * ocg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (OH - 1) + 1:sh, j * dw:j * dw + sw * (OW - 1) + 1:sw]
                out[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


# ----------------------------------------------------------------------------
# candidate formulas
# ----------------------------------------------------------------------------
# Every candidate is fn(r, b, oc) -> int64 output, with r an int64 array of accumulators
# (shape (1, n)), b a float32 array of biases (shape (P, 1)) and oc the output channel;
# the result broadcasts to (P, n).

class Params:
    """The float32 quantities every formula is built from, per output channel."""

    def __init__(self, a_scale, w_scales, per_channel, OC, y_scale, y_zp, relu):
        self.si_d = a_scale
        self.sw_d = np.array([w_scales[oc if per_channel else 0] for oc in range(OC)], np.float64)
        self.so_d = y_scale
        self.zp = int(y_zp)
        self.relu = bool(relu)
        self.lo = self.zp if relu else 0
        self.si = np.float32(a_scale)
        self.sw = self.sw_d.astype(np.float32)
        self.so = np.float32(y_scale)
        one = np.float32(1.0)
        # FBGEMM
        self.atws = (self.si * self.sw).astype(np.float32)
        self.M = (self.atws / self.so).astype(np.float32)
        self.rcp_d = f32(1.0 / self.atws.astype(np.float64))
        self.rcp_f = (one / self.atws).astype(np.float32)
        # QNNPACK
        self.inv_so = np.float32(one / self.so)
        self.S_rcp = (self.atws * self.inv_so).astype(np.float32)
        self.S_div = (self.atws / self.so).astype(np.float32)
        self.bscale_d = self.sw_d * float(self.si)           # double product of the scales
        self.bscale_f = f32(self.bscale_d)
        self.binv = (one / self.bscale_f).astype(np.float32)
        # oneDNN through ideep
        self.si_e = np.float32(one / np.float32(1.0 / float(self.si)))
        self.so_e = np.float32(one / np.float32(1.0 / float(self.so)))
        self.C1 = (self.si * self.sw).astype(np.float32)
        self.C2 = (self.si_e * self.sw).astype(np.float32)
        self.R1 = self.inv_so
        self.R2 = np.float32(one / self.so_e)


def fbgemm_candidates(p):
    """FBGEMM's float-bias requantization.  rcp = f32(1.0 / (double)atws); f32(1.0f / atws)
    is the same float for every scale drawn here (``rcp_float_differs`` counts exceptions),
    so the float-reciprocal variants of the brief are these same candidates."""
    def fb(term):
        def fn(r, b, oc):
            rf = f32(r)
            s = term(rf, b, oc) * p.M[oc]
            return rint_out(s, p.zp, p.lo)
        return fn
    return OrderedDict([
        ("fma_rcp", fb(lambda rf, b, oc: fma32(b, p.rcp_d[oc], rf))),
        ("add_mul_rcp", fb(lambda rf, b, oc: rf + (b * p.rcp_d[oc]).astype(np.float32))),
        ("add_div", fb(lambda rf, b, oc: rf + (b / p.atws[oc]).astype(np.float32))),
        ("fma_div", fb(lambda rf, b, oc: f32(rf.astype(np.float64) + b.astype(np.float64) / float(p.atws[oc])))),
    ])


def fbgemm_model(per_channel):
    return "add_div" if per_channel else "fma_rcp"


def qnnpack_candidates(p):
    def bq_model(b, oc):
        return np.rint((b * p.binv[oc]).astype(np.float32).astype(np.float64))

    def bq_div(b, oc):
        return np.rint((b / p.bscale_f[oc]).astype(np.float32).astype(np.float64))

    def bq_double(b, oc):
        return np.rint(b.astype(np.float64) / p.bscale_d[oc])

    def qn(bq, S):
        def fn(r, b, oc):
            acc = r + bq(b, oc)
            s = f32(acc) * S[oc]
            return rint_out(s, p.zp, p.lo)
        return fn

    def float_bias(r, b, oc):
        s = (f32(r) + (b / p.atws[oc]).astype(np.float32)) * p.S_rcp[oc]
        return rint_out(s, p.zp, p.lo)

    return OrderedDict([
        ("model", qn(bq_model, p.S_rcp)),
        ("mult_div", qn(bq_model, p.S_div)),
        ("bias_div", qn(bq_div, p.S_rcp)),
        ("bias_double", qn(bq_double, p.S_rcp)),
        ("float_bias", float_bias),
    ])


def onednn_candidates(p):
    """x86 -> oneDNN.  Reference ``two_step`` (found with these cases, see the module
    docstring): the int32 accumulator is multiplied by the source scale oneDNN was given,
    si_e = f32(1.0f / f32(1.0/si)) (ideep's reciprocal round trip), then by the weight scale,
    each product rounded; the float bias is added; ReLU; times f32(1/so); plus the zero point
    in float; rint of the value clamped to [0, 255]."""
    zpf = np.float32(p.zp)

    def od(scale="two_step", src=None, fma_bias=False, R=None, div=None, zp_mode="float"):
        src = p.si_e if src is None else src
        R = p.R1 if R is None else R

        def fn(r, b, oc):
            rf = f32(r)
            if scale == "combined":              # f32(raw * f32(src * sw))
                C = np.float32(src * p.sw[oc])
                d = fma32(rf, C, b) if fma_bias else (rf * C).astype(np.float32) + b
            elif scale == "two_step":            # f32(f32(raw * src) * sw)
                t1 = (rf * src).astype(np.float32)
                d = fma32(t1, p.sw[oc], b) if fma_bias else (t1 * p.sw[oc]).astype(np.float32) + b
            elif scale == "two_step_ws":         # f32(f32(raw * sw) * src)
                t1 = (rf * p.sw[oc]).astype(np.float32)
                d = fma32(t1, src, b) if fma_bias else (t1 * src).astype(np.float32) + b
            elif scale == "two_step_swe":        # weight scale also through 1/(1/sw)
                swe = np.float32(np.float32(1) / np.float32(1.0 / float(p.sw[oc])))
                d = (((rf * src).astype(np.float32)) * swe).astype(np.float32) + b
            else:
                raise ValueError(scale)
            d = d.astype(np.float32)
            if p.relu:
                d = np.maximum(d, np.float32(0))
            if zp_mode == "fma":
                return rint_float(fma32(d, R, zpf), 0)
            t = (d * R if div is None else d / div).astype(np.float32)
            if zp_mode == "int":
                return rint_out(t, p.zp, 0)
            return rint_float((t + zpf).astype(np.float32), 0)
        return fn

    return OrderedDict([
        ("two_step", od()),
        ("model", od(scale="combined", src=p.si)),             # the brief's model
        ("combined_ideep_src", od(scale="combined")),
        ("combined_fma_bias", od(scale="combined", src=p.si, fma_bias=True)),
        ("two_step_plain_si", od(src=p.si)),
        ("two_step_ws", od(scale="two_step_ws")),
        ("two_step_swe", od(scale="two_step_swe")),
        ("two_step_fma_bias", od(fma_bias=True)),
        ("two_step_div_so", od(div=p.so)),
        ("two_step_div_so_e", od(div=p.so_e)),
        ("two_step_zp_after", od(zp_mode="int")),
        ("two_step_fma_zp", od(zp_mode="fma")),
    ])


def float_path_candidates(p):
    """Functions of the float conv output y (float32), not of (raw, bias)."""
    R = p.inv_so
    zpf = np.float32(p.zp)

    def relu(y):
        return np.maximum(y, np.float32(0)) if p.relu else y

    return OrderedDict([
        ("model", lambda y: rint_out((relu(y) * R).astype(np.float32), p.zp, 0)),
        ("div", lambda y: rint_out((relu(y) / p.so).astype(np.float32), p.zp, 0)),
        ("zp_float", lambda y: rint_float(((relu(y) * R).astype(np.float32) + zpf).astype(np.float32), 0)),
        ("fma_zp", lambda y: rint_float(fma32(relu(y), R, zpf), 0)),
    ])


def structured_y(p, m):
    """For structured designs: the exact float conv output (raw + B) * 2^-m as float32."""
    def fn(r, b):
        return (f32(r) * np.float32(2.0 ** -m)).astype(np.float32) + b
    return fn


# ----------------------------------------------------------------------------
# geometry and data
# ----------------------------------------------------------------------------

def geometry(rng, path):
    spec = {"N": 1, "dilation": (1, 1)}
    if path == "mixed":
        path = str(rng.choice(["im2col", "pointwise", "depthwise", "grouped"]))
    if path == "im2col":
        k = int(rng.choice([3, 3, 3, 2, 5]))
        s = int(rng.choice([1, 1, 2]))
        p = int(rng.choice([0, (k - 1) // 2, (k - 1) // 2]))
        spec.update(kernel=(k, k), stride=(s, s), padding=(p, p), groups=1,
                    C=int(rng.integers(2, 7)), OC=int(rng.integers(4, 13)))
        lo, hi = max(k + 1, 5), 9
    elif path == "pointwise":
        spec.update(kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1,
                    C=int(rng.integers(3, 17)), OC=int(rng.integers(4, 13)))
        lo, hi = 4, 9
    elif path == "depthwise":
        G = int(rng.choice([8, 16]))
        s = int(rng.choice([1, 1, 2]))
        spec.update(kernel=(3, 3), stride=(s, s), padding=(1, 1), groups=G, C=G, OC=G)
        lo, hi = 5, 9
    elif path == "groupwise":
        spec.update(kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=16, C=64, OC=64)
        lo, hi = 4, 6
    elif path == "grouped":
        G = int(rng.integers(2, 5))
        cg, ocg = int(rng.choice([2, 3, 5])), int(rng.choice([2, 3]))
        spec.update(kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=G, C=G * cg, OC=G * ocg)
        lo, hi = 5, 8
    else:
        raise ValueError(path)
    spec["H"] = int(rng.integers(lo, hi + 1))
    spec["W"] = int(rng.integers(lo, hi + 1))
    return spec, path


def fbgemm_path_expected(path):
    return {"grouped": "im2col"}.get(path, path)


def draw_weight_ints(rng, shape, zp_oc, sd, step=1):
    """Raw s8 weights w = zp[oc] + step * k, kept in [-64, 63] (no int16 pair saturation)."""
    OC = shape[0]
    zcol = np.asarray(zp_oc, np.int64).reshape(OC, 1, 1, 1)
    k = np.rint(rng.normal(0.0, sd / step, size=shape)).astype(np.int64)
    w = zcol + step * k
    lo_k = np.ceil((-64 - zcol) / step).astype(np.int64)
    hi_k = np.floor((63 - zcol) / step).astype(np.int64)
    k = np.clip(k, lo_k, hi_k)
    return (zcol + step * k).astype(np.int8)


def log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def weight_zps(rng, OC, per_channel, symmetric):
    if symmetric:
        return [0] * (OC if per_channel else 1)
    if per_channel:
        z = rng.integers(-10, 11, size=OC)
        z[z == 0] = 3
        return [int(v) for v in z]
    z = 0
    while z == 0:
        z = int(rng.integers(-10, 11))
    return [z]


# ----------------------------------------------------------------------------
# bias design
# ----------------------------------------------------------------------------

def choose_per_channel(rng, raws, cands, model, pool_fn):
    """Pick one bias per output channel from pool_fn(oc, r) so that as many alternatives
    as possible disagree with the model on as many elements as possible."""
    OC = raws.shape[1]
    alts = [a for a in cands if a != model]
    coverage = np.zeros(len(alts))
    chosen = np.zeros(OC, np.float32)
    for oc in rng.permutation(OC):
        r = raws[:, oc].reshape(1, -1)
        pool = np.unique(pool_fn(int(oc), r.ravel()).astype(np.float32))
        pool = pool[np.isfinite(pool)]
        if pool.size == 0:
            continue
        bb = pool.reshape(-1, 1)
        base = cands[model](r, bb, oc)
        disc = np.stack([(cands[a](r, bb, oc) != base).sum(axis=1) for a in alts])
        weights = 1.0 / (1.0 + coverage)
        score = (weights[:, None] * np.minimum(disc, 4)).sum(0) + 1e-3 * disc.sum(0)
        score = score + 1e-6 * rng.random(score.shape)
        i = int(np.argmax(score))
        chosen[oc] = pool[i]
        coverage += disc[:, i] > 0
    return chosen


def predicted(cands, model, raws, bias):
    """alternative -> number of elements (whole case) where it differs from the model."""
    OC = raws.shape[1]
    out = {a: 0 for a in cands if a != model}
    for oc in range(OC):
        r = raws[:, oc].reshape(1, -1)
        bb = np.array([[bias[oc]]], np.float32)
        base = cands[model](r, bb, oc)
        for a in out:
            out[a] += int((cands[a](r, bb, oc) != base).sum())
    return out


def target_ks(rng, p, n):
    """Output integers K whose tie K + 0.5 to aim at: mostly next to the zero point (so the
    bias cancels most of the accumulator and float rounding of the bias term matters)."""
    ks = []
    for _ in range(n):
        if rng.random() < 0.75:
            j = int(rng.integers(0, 5)) if p.relu else int(rng.integers(-4, 5))
            K = p.zp + j
        else:
            K = int(rng.integers(p.lo, 255))
        ks.append(min(max(K, p.lo), 254))
    return ks


def target_elements(rng, r, n):
    """Distinct accumulators of a channel to aim at, favouring large |raw|."""
    vals = np.unique(r)
    order = vals[np.argsort(-np.abs(vals))]
    top = order[:max(n * 3, 1)]
    return rng.choice(top, size=min(n, top.size), replace=False)


def fbgemm_pool(rng, p, J=40, n_targets=8):
    def fn(oc, r):
        pools = []
        for rv, K in zip(target_elements(rng, r, n_targets), target_ks(rng, p, n_targets)):
            T = (K + 0.5 - p.zp) / float(p.M[oc])
            b0 = (T - float(rv)) * float(p.atws[oc])
            pools.append(ulp_neighbours(b0, J))
        return np.concatenate(pools) if pools else np.zeros(0, np.float32)
    return fn


def onednn_pool(rng, p, J=40, n_targets=8):
    def fn(oc, r):
        pools = []
        for rv, K in zip(target_elements(rng, r, n_targets), target_ks(rng, p, n_targets)):
            b0 = (K + 0.5 - p.zp) * float(p.so) - float(rv) * float(p.C1[oc])
            pools.append(ulp_neighbours(b0, J))
        return np.concatenate(pools) if pools else np.zeros(0, np.float32)
    return fn


# ----------------------------------------------------------------------------
# case designs
# ----------------------------------------------------------------------------

def design_scan(rng, question, path):
    """Random realistic scales; biases picked by scanning around tie-producing values.

    Q1/Q2 use asymmetric weights in 75 % of cases so that x86 also goes to FBGEMM; Q4
    uses symmetric weights (x86 -> oneDNN) and, in half of the cases each, an input scale
    with f32(1/f32(1/si)) != si and an output scale with f32(1/f32(1/so)) != so so that
    ideep's reciprocal round trips are visible."""
    spec, path = geometry(rng, path)
    spec["per_channel"] = {"Q1": False, "Q2": True}.get(question, bool(rng.random() < 0.5))
    spec["relu"] = bool(rng.random() < 0.25)
    symmetric = question == "Q4" or rng.random() < 0.25
    N, C, H, W, OC, G = spec["N"], spec["C"], spec["H"], spec["W"], spec["OC"], spec["groups"]
    kh, kw = spec["kernel"]
    if rng.random() < 0.2:  # input zero point 0: the kernels' A_SYMMETRIC variants
        a_zp = 0
        x = rng.integers(0, 256, size=(N, C, H, W)).astype(np.uint8)
    else:
        a_zp = int(rng.integers(60, 196))
        x = np.clip(np.rint(rng.normal(a_zp, rng.uniform(20, 60), size=(N, C, H, W))), 0, 255).astype(np.uint8)
    w_zps = weight_zps(rng, OC, spec["per_channel"], symmetric)
    zp_oc = w_zps if spec["per_channel"] else w_zps * OC
    w = draw_weight_ints(rng, (OC, C // G, kh, kw), zp_oc, rng.uniform(10, 30))
    raws = exact_raw(spec, x, a_zp, w, zp_oc)

    def roundtrip(v):
        return np.float32(np.float32(1.0) / np.float32(1.0 / float(v)))

    def draw_scale(lo, hi, want, changed):
        for _ in range(1000):
            v = float(np.float32(log_uniform(rng, lo, hi)))
            if want is None or changed(v) == want:
                return v
        return v

    want_si = (rng.random() < 0.5) if question == "Q4" else None
    # ideep hands oneDNN si_e = f32(1/f32(1/si)): make it differ from si in half the cases
    a_scale = draw_scale(2e-3, 5e-2, want_si, lambda v: roundtrip(v) != np.float32(v))
    base = log_uniform(rng, 1e-3, 2e-2)
    if spec["per_channel"]:
        w_scales = [float(np.float32(base * math.exp(rng.uniform(-0.7, 0.7)))) for _ in range(OC)]
    else:
        w_scales = [float(np.float32(base))]
    atws_med = float(np.median([np.float32(a_scale) * np.float32(s) for s in w_scales]))
    big = float(np.percentile(np.abs(raws), 99)) + 1.0
    spec_scale = atws_med * big / rng.uniform(90, 125)
    want_so = (rng.random() < 0.5) if question == "Q4" else None
    # and so_e = f32(1/f32(1/so)) != so in half the cases (f32(1/so_e) == f32(1/so) always,
    # so only a division by so_e could tell the output-scale round trip apart)
    y_scale = draw_scale(spec_scale * 0.97, spec_scale * 1.03, want_so,
                         lambda v: roundtrip(v) != np.float32(v))
    y_zp = int(rng.integers(0, 80)) if spec["relu"] else int(rng.integers(90, 166))
    p = Params(a_scale, w_scales, spec["per_channel"], OC, y_scale, y_zp, spec["relu"])
    if question in ("Q1", "Q2"):
        cands = fbgemm_candidates(p)
        model = fbgemm_model(spec["per_channel"])
        pool = fbgemm_pool(rng, p)
    elif question == "Q4":
        cands = onednn_candidates(p)
        model = "two_step"
        pool = onednn_pool(rng, p)
    else:
        raise ValueError(question)
    bias = choose_per_channel(rng, raws, cands, model, pool)
    return dict(spec=spec, path=path, x=x, a_scale=a_scale, a_zp=a_zp, w=w, w_scales=w_scales,
                w_zps=w_zps, bias=bias, y_scale=y_scale, y_zp=y_zp, raws=raws, params=p,
                cands=cands, model=model, design="scan")


def design_qnnpack(rng, path):
    """Q3: scales chosen so that one of the two multiplier formulas is exactly 2^-e and the
    other is not; then every accumulator that is an odd multiple of 2^(e-1) is an exact tie
    for one formula and just off it for the other.  Biases are picked from float32 values
    around (n + 0.5) * bias_scale so that the bias quantization formulas disagree too."""
    spec, path = geometry(rng, path)
    spec["per_channel"] = bool(rng.random() < 0.5)
    spec["relu"] = bool(rng.random() < 0.2)
    N, C, H, W, OC, G = spec["N"], spec["C"], spec["H"], spec["W"], spec["OC"], spec["groups"]
    kh, kw = spec["kernel"]
    a_zp = int(rng.integers(20, 236))
    x = np.clip(np.rint(rng.normal(a_zp, rng.uniform(2, 6), size=(N, C, H, W))), 0, 255).astype(np.uint8)
    w_zps = weight_zps(rng, OC, spec["per_channel"], rng.random() < 0.4)
    zp_oc = w_zps if spec["per_channel"] else w_zps * OC
    w = draw_weight_ints(rng, (OC, C // G, kh, kw), zp_oc, rng.uniform(2, 5))
    raws = exact_raw(spec, x, a_zp, w, zp_oc)
    sd = float(raws.std()) + 1.0
    e = int(min(max(1, math.ceil(math.log2(3 * sd / 100.0))), 6))
    S_t = 2.0 ** -e
    exact_model = bool(rng.random() < 0.5)  # which formula gets the exact power of two
    n_w = OC if spec["per_channel"] else 1
    for _ in range(20000):
        a_scale = float(np.float32(log_uniform(rng, 2e-3, 5e-2)))
        y_scale = float(np.float32(log_uniform(rng, 1e-3, 1e-1)))
        si, so = np.float32(a_scale), np.float32(y_scale)
        inv_so = np.float32(np.float32(1) / so)
        w_scales = []
        for _c in range(n_w):
            base = np.float32(S_t * float(so) / float(si))
            found = None
            for cand in rng.permutation(ulp_neighbours(base, 12)):
                atws = np.float32(si * cand)
                sr = np.float32(atws * inv_so)
                sdv = np.float32(atws / so)
                ok = (sr == S_t and sdv != S_t) if exact_model else (sdv == S_t and sr != S_t)
                if ok and 1e-5 < float(cand) < 1.0:
                    found = float(cand)
                    break
            if found is None:
                break
            w_scales.append(found)
        if len(w_scales) == n_w:
            break
    else:
        raise RuntimeError("no qnnpack scales found")
    y_zp = int(rng.integers(0, 40)) if spec["relu"] else int(rng.integers(80, 176))
    p = Params(a_scale, w_scales, spec["per_channel"], OC, y_scale, y_zp, spec["relu"])
    cands = qnnpack_candidates(p)

    def pool(oc, r):
        mid = (p.lo + 255) / 2.0 if spec["relu"] else 127.5
        n0 = int(round((mid - p.zp) / S_t - float(np.median(r))))
        out = []
        for n in range(n0 - 6, n0 + 7):
            out.append(ulp_neighbours((n + 0.5) * float(p.bscale_d[oc]), 6))
            out.append(ulp_neighbours(n * float(p.bscale_d[oc]), 1))
        return np.concatenate(out)

    bias = choose_per_channel(rng, raws, cands, "model", pool)
    spec["qnnpack_exact_power_of_two"] = "model" if exact_model else "mult_div"
    spec["qnnpack_e"] = e
    return dict(spec=spec, path=path, x=x, a_scale=a_scale, a_zp=a_zp, w=w, w_scales=w_scales,
                w_zps=w_zps, bias=bias, y_scale=y_scale, y_zp=y_zp, raws=raws, params=p,
                cands=cands, model="model", design="structured")


def design_structured(rng, question, path):
    """Q4 / Q5 with exact arithmetic up to the output step.

    si = 2^-a, sw = 2^-b (m = a + b), weights w - w_zp = c * k with c odd (15, 61 or 63),
    bias = B * 2^-m with B a multiple of c.  Then the float conv output (PyTorch's F.conv2d
    or oneDNN's f32(raw*C) + b) is exactly (raw + B) * 2^-m, every partial sum is exact in
    any order, and with so = c * 2^(s + 1 - m) the real quotient y / so = (raw/c + B/c) /
    2^(s+1) is an exact half-integer for half (s = 0) of the elements.  Multiplying by
    f32(1/so) = f32(1/c) * 2^(m-1-s), whose relative error is ~0.9 ulp/2, moves most of those
    ties off the tie; dividing, or adding a large zero point in float before rounding, puts
    them back."""
    spec, path = geometry(rng, path)
    spec["per_channel"] = bool(rng.random() < 0.3)
    spec["relu"] = bool(rng.random() < 0.2)
    N, C, H, W, OC, G = spec["N"], spec["C"], spec["H"], spec["W"], spec["OC"], spec["groups"]
    kh, kw = spec["kernel"]
    c = int(rng.choice(GOOD_C))
    step = c if rng.random() < 0.85 else 1
    a_zp = int(rng.integers(20, 236))
    x = np.clip(np.rint(rng.normal(a_zp, rng.uniform(2, 8), size=(N, C, H, W))), 0, 255).astype(np.uint8)
    w_zps = [0] * (OC if spec["per_channel"] else 1)  # symmetric: x86 -> oneDNN
    zp_oc = w_zps if spec["per_channel"] else w_zps * OC
    sd_w = rng.uniform(0.7, 2.0) * step if step > 1 else rng.uniform(15, 40)
    w = draw_weight_ints(rng, (OC, C // G, kh, kw), zp_oc, sd_w, step=step)
    raws = exact_raw(spec, x, a_zp, w, zp_oc)
    a_pow, b_pow = int(rng.integers(5, 9)), int(rng.integers(6, 11))
    m = a_pow + b_pow
    a_scale = 2.0 ** -a_pow
    w_scales = [2.0 ** -b_pow] * (OC if spec["per_channel"] else 1)
    sd = float((raws / c).std()) + 1.0
    s = int(min(max(0, math.ceil(math.log2(3 * sd / 100.0))), 6))
    y_scale = float(c) * 2.0 ** (s + 1 - m)
    zero_zp = rng.random() < 0.35
    if spec["relu"]:
        y_zp = 0 if zero_zp else int(rng.integers(1, 60))
    else:
        y_zp = 0 if zero_zp else int(rng.integers(80, 176))
    p = Params(a_scale, w_scales, spec["per_channel"], OC, y_scale, y_zp, spec["relu"])
    unit = np.float32(2.0 ** -m)
    c2 = c * 2 ** (s + 1)

    def pool(oc, r):
        Bs = []
        mid = (p.lo + 255) / 2.0 if (spec["relu"] or y_zp == 0) else 127.5
        Bc = (mid - p.zp) * c2 - float(np.median(r))
        for rv in target_elements(rng, r, 10):
            for K in range(p.lo, 255, 3):
                B = (K + 0.5 - p.zp) * c2 - float(rv)
                if abs(B - Bc) < 60 * c2:
                    Bs.append(B)
        Bs = np.array(Bs + [Bc], np.float64)
        Bs = np.round(Bs / c) * c  # keep B a multiple of c
        return f32(Bs * float(unit))

    if question == "Q4":
        cands = onednn_candidates(p)
    else:
        yfn = structured_y(p, m)
        fp = float_path_candidates(p)
        cands = OrderedDict((k, (lambda f: (lambda r, b, oc: f(yfn(r, b))))(f)) for k, f in fp.items())
    ref = "two_step" if question == "Q4" else "model"
    bias = choose_per_channel(rng, raws, cands, ref, pool)
    spec["structured"] = {"c": c, "weight_step": step, "m": m, "s": s}
    return dict(spec=spec, path=path, x=x, a_scale=a_scale, a_zp=a_zp, w=w, w_scales=w_scales,
                w_zps=w_zps, bias=bias, y_scale=y_scale, y_zp=y_zp, raws=raws, params=p,
                cands=cands, model=ref, design="structured")


# ----------------------------------------------------------------------------
# running the engines, writing and analysing cases
# ----------------------------------------------------------------------------

def run_case(d, isa, has_vnni, has_avx512, question, combo_path, seed, index, threads):
    spec = d["spec"]
    per_channel = spec["per_channel"]
    x_q, w_q = gp.quantized_tensors(d["x"], d["a_scale"], d["a_zp"], d["w"], d["w_scales"],
                                    d["w_zps"], per_channel)
    bias_t = torch.from_numpy(np.asarray(d["bias"], np.float32).copy())
    y_scale, y_zp = d["y_scale"], d["y_zp"]
    expected, errors = {}, {}
    route, impl = None, None
    for engine in gp.ENGINES:
        try:
            out, impls = gp.run_engine(engine, spec, x_q, w_q, bias_t, y_scale, y_zp)
            expected[engine] = out
            if engine == "x86":
                route = "onednn" if impls else "fbgemm"
                impl = impls[0] if impls else None
        except Exception as exc:
            errors[engine] = gp.first_line(exc)
    y_float = gp.float_conv(spec, x_q, w_q, bias_t)
    y_pre_relu = gp.float_conv(dict(spec, relu=False), x_q, w_q, bias_t)
    try:
        fq = torch.quantize_per_tensor(y_float, y_scale, y_zp, torch.quint8)
        expected["float_path"] = fq.int_repr().flatten().tolist()
    except Exception as exc:
        errors["float_path"] = gp.first_line(exc)
    rule = gp.x86_route_rule(spec, d["w_zps"], has_vnni)
    if route is not None and route != rule:
        raise SystemExit(f"x86 route observed {route}, rule says {rule}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]
    OH, OW = out_size(spec["H"], kh, sh, ph, dh), out_size(spec["W"], kw, sw, pw, dw)
    path = gp.fbgemm_path(spec, has_avx512)
    want = fbgemm_path_expected(d["path"])
    if path != want:
        raise SystemExit(f"geometry drew fbgemm path {path}, wanted {want}: {spec}")
    pred = predicted(d["cands"], d["model"], d["raws"], d["bias"])
    cand_names = [d["model"]] + [a for a in d["cands"] if a != d["model"]]
    source = {
        "framework": "pytorch",
        "version": torch.__version__,
        "isa": isa,
        "family": "ties",
        "question": question,
        "target": f"{question}/{QUESTION_TITLES[question]}/{d['path']}",
        "design": d["design"],
        "candidates": cand_names,
        "predicted_discriminating": pred,
        "seed": seed,
        "index": index,
        "generator": "tools/golden/gen_ties.py",
        "fbgemm_enable_instructions": ISA_ENV[isa],
        "threads": threads,
        "fbgemm_path": path,
        "fbgemm_accumulation": gp.fbgemm_accumulation(path, isa, has_vnni),
        "x86_route": route if route is not None else rule,
    }
    for key in ("structured", "qnnpack_exact_power_of_two", "qnnpack_e"):
        if key in spec:
            source[key] = spec[key]
    if path == "groupwise" and has_vnni:
        source["groupwise_requant"] = ("the groupwise kernel and its requantization are chosen with "
                                       "cpuinfo (AVX-512 / VNNI on this host), not with "
                                       "FBGEMM_ENABLE_INSTRUCTIONS; data cannot saturate")
    omitted = gp.host_artifacts(isa, path, source["x86_route"], has_vnni)
    omitted.pop("fbgemm", None)  # see module docstring: exact data, keep groupwise fbgemm
    if path == "groupwise" and source["x86_route"] == "fbgemm":
        omitted.pop("x86", None)
    for engine in omitted:
        expected.pop(engine, None)
        errors.pop(engine, None)
    if omitted:
        source["omitted"] = omitted
    if impl is not None:
        source["x86_onednn_impl"] = impl
    case = {
        "id": f"pytorch-ties-{isa}-{seed}-{question}-{d['path']}-{d['design']}-{index:03d}",
        "source": source,
        "conv": {"kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "dilation": [dh, dw],
                 "groups": spec["groups"]},
        "input": {"dtype": "uint8", "shape": [spec["N"], spec["C"], spec["H"], spec["W"]],
                  "scale": d["a_scale"], "zero_point": d["a_zp"], "data": d["x"].flatten().tolist()},
        "weight": {"dtype": "int8", "shape": list(d["w"].shape), "axis": 0 if per_channel else None,
                   "scale": d["w_scales"], "zero_point": d["w_zps"], "data": d["w"].flatten().tolist()},
        "bias": {"dtype": "float32", "data": [float(b) for b in d["bias"]]},
        "relu": spec["relu"],
        "output": {"dtype": "uint8", "scale": y_scale, "zero_point": y_zp,
                   "shape": [spec["N"], spec["OC"], OH, OW]},
        "expected": expected,
    }
    if errors:
        case["errors"] = errors
    ys = y_pre_relu.detach().numpy().astype(np.float32)
    return case, ys


def analyse_case(case, d, y_pre_relu):
    """Per engine: the question its result answers, and per candidate (disc, miss)."""
    p = d["params"]
    raws = d["raws"]
    OC = raws.shape[1]
    bias = np.asarray(d["bias"], np.float32)
    per_channel = d["spec"]["per_channel"]
    rows = []
    exp = case["expected"]

    def evaluate(engine, question, cands, model, use_y=False):
        got = np.asarray(exp[engine], np.int64).reshape(raws.shape)
        outs = {}
        for name, fn in cands.items():
            o = np.zeros(raws.shape, np.int64)
            for oc in range(OC):
                if use_y:
                    o[:, oc] = fn(y_pre_relu[:, oc].reshape(-1)).reshape(o[:, oc].shape)
                else:
                    r = raws[:, oc].reshape(1, -1)
                    o[:, oc] = fn(r, np.array([[bias[oc]]], np.float32), oc).reshape(o[:, oc].shape)
            outs[name] = o
        res = OrderedDict()
        for name in [model] + [a for a in cands if a != model]:
            res[name] = {"disc": int((outs[name] != outs[model]).sum()),
                         "miss": int((outs[name] != got).sum())}
        rows.append({"engine": engine, "question": question, "model": model, "candidates": res,
                     "elements": int(got.size)})

    fbq = "Q2" if per_channel else "Q1"
    if "fbgemm" in exp:
        evaluate("fbgemm", fbq, fbgemm_candidates(p), fbgemm_model(per_channel))
    if "x86" in exp:
        if case["source"]["x86_route"] == "fbgemm":
            evaluate("x86", fbq, fbgemm_candidates(p), fbgemm_model(per_channel))
        else:
            evaluate("x86", "Q4", onednn_candidates(p), "two_step")
    if "qnnpack" in exp:
        evaluate("qnnpack", "Q3", qnnpack_candidates(p), "model")
    if "float_path" in exp:
        evaluate("float_path", "Q5", float_path_candidates(p), "model", use_y=True)
    return rows


def summarise(records):
    """Aggregate per (question, engine, path, designed-for-this-question?)."""
    agg = OrderedDict()
    for rec in records:
        for row in rec["rows"]:
            designed = row["question"] == rec["question"]
            key = (row["question"], row["engine"], rec["path"],
                   (rec["design"] if designed else "incidental"))
            a = agg.setdefault(key, {"cases": 0, "elements": 0, "model": row["model"],
                                     "candidates": OrderedDict(), "cases_with_disc": 0})
            a["cases"] += 1
            a["elements"] += row["elements"]
            any_disc = False
            for name, v in row["candidates"].items():
                c = a["candidates"].setdefault(name, {"disc": 0, "miss": 0, "cases_missed": 0,
                                                      "cases_disc": 0})
                c["disc"] += v["disc"]
                c["miss"] += v["miss"]
                c["cases_missed"] += v["miss"] > 0
                c["cases_disc"] += v["disc"] > 0
                any_disc |= v["disc"] > 0
            a["cases_with_disc"] += any_disc
    return agg


def print_summary(agg, file=sys.stderr):
    for (q, engine, path, kind), a in sorted(agg.items()):
        print(f"{q} {engine:10s} {path:10s} {kind:10s} cases {a['cases']:3d} "
              f"(with disc {a['cases_with_disc']:3d}) elements {a['elements']}", file=file)
        for name, c in a["candidates"].items():
            tag = " <- reference" if name == a["model"] else ""
            if name == BRIEF_MODEL[q]:
                tag += " <- brief's model"
            print(f"      {name:15s} disc {c['disc']:6d} ({c['cases_disc']:3d} cases)  "
                  f"miss {c['miss']:6d} ({c['cases_missed']:3d} cases){tag}", file=file)


# ----------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", required=True, choices=list(ISA_ENV))
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, default=20, help="cases per (question, path, design)")
    ap.add_argument("--out", required=True, help="output FILE.jsonl.gz")
    ap.add_argument("--analysis", help="write the per-case analysis and summary here (JSON)")
    ap.add_argument("--questions", default="Q1,Q2,Q3,Q4,Q5", help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-selfcheck", action="store_true")
    return ap.parse_args(argv)


def main(argv=None):
    global np, torch, gp
    args = parse_args(argv)
    if "torch" in sys.modules:
        raise SystemExit("torch was imported before FBGEMM_ENABLE_INSTRUCTIONS could be set")
    env = ISA_ENV[args.isa]
    if env is None:
        os.environ.pop("FBGEMM_ENABLE_INSTRUCTIONS", None)
    else:
        os.environ["FBGEMM_ENABLE_INSTRUCTIONS"] = env
    warnings.filterwarnings("ignore")
    sys.path.insert(0, HERE)
    import gen_pytorch as _gp
    import numpy as _np
    import torch as _torch
    import torch.nn.functional as _F
    import torch.ao.nn.quantized as _nnq
    import torch.ao.nn.intrinsic.quantized as _nniq
    gp, np, torch = _gp, _np, _torch
    gp.np, gp.torch, gp.F, gp.nnq, gp.nniq = _np, _torch, _F, _nnq, _nniq
    torch.set_num_threads(args.threads)
    flags = gp.cpu_flags()
    missing = gp.ISA_CPU_FLAGS[args.isa] - flags
    if flags and missing:
        raise SystemExit(f"--isa {args.isa}: this CPU lacks {sorted(missing)}")
    has_vnni = "avx512_vnni" in flags
    has_avx512 = gp.ISA_CPU_FLAGS["avx512"] <= flags
    if not args.no_selfcheck:
        got = gp.seed_case_fbgemm()
        want = 0 if args.isa == "avx512-vnni" else 7
        if got != want:
            raise SystemExit(f"ISA self check failed: fbgemm seed case gave {got}, expected {want}")
        print(f"self check: fbgemm seed case = {got} (isa {args.isa})", file=sys.stderr)

    questions = set(args.questions.split(","))
    t0 = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".part"
    records = []
    n = 0
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for ci, (question, path, design) in enumerate(COMBOS):
            if question not in questions:
                continue
            if question == "Q4" and not has_vnni:
                continue
            if question == "Q4" and args.isa != "avx512-vnni":
                continue  # an AVX2 machine routes x86 to FBGEMM, never to oneDNN
            for i in range(args.count):
                rng = np.random.default_rng([args.seed, ci, i])
                if design == "scan":
                    d = design_scan(rng, question, path)
                elif question == "Q3":
                    d = design_qnnpack(rng, path)
                else:
                    d = design_structured(rng, question, path)
                case, ys = run_case(d, args.isa, has_vnni, has_avx512, question, path, args.seed, i,
                                    args.threads)
                f.write(json.dumps(case) + "\n")
                n += 1
                rows = analyse_case(case, d, ys)
                records.append({"id": case["id"], "question": question, "path": d["path"],
                                "design": design,
                                "variant": {"a_zp0": d["a_zp"] == 0, "w_symmetric": all(z == 0 for z in d["w_zps"]),
                                            "relu": d["spec"]["relu"], "per_channel": d["spec"]["per_channel"]}, "predicted": case["source"]["predicted_discriminating"],
                                "x86_route": case["source"]["x86_route"],
                                "x86_onednn_impl": case["source"].get("x86_onednn_impl"),
                                "rows": rows})
    os.replace(tmp, args.out)
    agg = summarise(records)
    print(f"wrote {n} cases to {args.out} in {time.time() - t0:.1f} s", file=sys.stderr)
    print_summary(agg)
    if args.analysis:
        os.makedirs(os.path.dirname(os.path.abspath(args.analysis)), exist_ok=True)
        with open(args.analysis, "w") as f:
            json.dump({"isa": args.isa, "seed": args.seed, "count": args.count,
                       "summary": [{"question": k[0], "engine": k[1], "path": k[2], "kind": k[3], **v}
                                   for k, v in agg.items()],
                       "cases": records}, f, indent=1)


if __name__ == "__main__":
    main()

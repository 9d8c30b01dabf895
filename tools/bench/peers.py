#!/usr/bin/env python3
"""Time qconv's standard benchmark suite against its peers: PyTorch quantized Conv2d and ONNX
Runtime QLinearConv.

What it measures
----------------
For every suite layer (the list in crates/qconv/src/bench.rs, `SUITE`: batch 1, NCHW) and every
thread count asked for, the median wall time of one convolution call for:

* qconv      -- `qconv bench --threads T --format json --engines exact --time-ms B --layers L`,
                run as a subprocess of this script, one process per layer (timed region, as in
                bench.rs: uint8 NCHW input in, uint8 NCHW output out, weights packed beforehand).
* fbgemm     -- torch.ao.nn.quantized.Conv2d with torch.backends.quantized.engine = "fbgemm".
* x86        -- the same module with engine "x86" (PyTorch's default). On an AVX-512-VNNI CPU on
                Linux, "x86" prepacks symmetric weights (all zero points 0, as here) with oneDNN when
                groups <= 100, otherwise with fbgemm. So here: oneDNN for every layer except
                mv2_dw3x3_144_56 (144 groups -> fbgemm). The route is recorded per layer in the JSON.
* qnnpack    -- the same module with engine "qnnpack" (PyTorch's own QNNPACK; the x86-64 wheel has no
                XNNPACK).
* onnxruntime -- one ONNX model per layer holding a single QLinearConv (opset 13), run on the CPU
                execution provider.

PyTorch peers: the module is built after selecting the engine, with per-channel symmetric qint8
weights (per-output-channel scales, zero points 0) and a float32 bias; `set_weight_bias` prepacks
them (outside the timed region). The input is a quint8 tensor (scale 0.02, zero point 128) converted
to channels_last *before* timing ("channels-last input, weights prepacked"). torch.set_num_threads(T)
(this also sizes the pthreadpool QNNPACK uses). Timed region: `module(x)` only, called inside
torch.inference_mode(); the result is a freshly allocated quint8 channels_last tensor.

ONNX Runtime: QLinearConv with x uint8 (zero point 128, scale 0.02), w int8 per-channel (zero points
0) and an int32 bias (round(bias / (x_scale * w_scale[oc]))) as initializers, so ORT can prepack the
weights at session creation. SessionOptions: intra_op_num_threads=T, inter_op_num_threads=1,
graph_optimization_level=ORT_ENABLE_ALL, execution_mode=ORT_SEQUENTIAL, CPUExecutionProvider only.
Timed region: `session.run_with_iobinding(binding)`, where the binding holds a preallocated uint8
NCHW input OrtValue and a preallocated uint8 NCHW output OrtValue (no per-call allocation or
numpy<->OrtValue conversion; this is the lowest-overhead Python entry point and mirrors qconv, which
writes into a preallocated buffer). At ORT_ENABLE_ALL the layout transformer rewrites the node into
com.microsoft.QLinearConv(channels_last=1) between Transpose nodes, so the timed region includes the
NCHW<->NHWC transposes, as qconv's does. The plain `session.run({"x": x})` median is also measured
and written to the JSON (the ORT result's "session_run") for reference; it is not used in the tables.

Data follows bench.rs exactly (same LCG, so the same numbers qconv times): uint8 activations uniform
over 0..255 (zp 128, scale 0.02); int8 weights uniform over -128..127; weight scales
0.002 + 0.0001*(oc % 7); bias (oc % 5)*0.25 - 0.5 (float32); output uint8, zp 128, scale
0.02*0.002*sqrt(C/G*k*k)*128 (three standard deviations of the sum span the output range).

Timing (peers): warm-up (at least 3 calls and 0.1 s), then individually timed calls
(time.perf_counter_ns, garbage collector off) until at least --min-runs (10) calls and --time-ms
(500 ms) have passed; median and min are reported. qconv uses its own harness (bench.rs: one
warm-up call, >= 5 runs, until the same --time-ms budget). GOPS = 2 x MACs / median seconds, MACs =
OC * OH * OW * (C/G) * k * k.

Contention: the machine this was written for has 2 cores, and one other busy process (a compiler,
a test run) wrecks 2-thread measurements -- a thread pool's barrier then waits for a descheduled
thread and calls take whole scheduler ticks (8 or 16 ms instead of 0.5 ms). So before each
measurement the script waits (up to --quiet-wait s) until other processes use < --max-foreign
cores (0.1), and during it compares the machine's busy CPU time (/proc/stat) with the measuring
process's own; if others used >= --max-foreign cores (or the hypervisor stole that much), the
measurement is repeated (up to --retries more times, 3). The least disturbed attempt is kept; if
even that one was disturbed, its value is starred in the tables ("contended" in the JSON, with
foreign_cores / steal_cores / attempts / waited_s for every measurement).

Every peer runs in its own child process (this script re-invoked with --worker), one process per
(peer, thread count), one after another, never concurrently: the OpenMP pool of PyTorch and the
spinning thread pool of ORT never share a process, and a peer that crashes (segfault) cannot take
the run down. A layer that raises is recorded as failed ("error" in the JSON, "fail" in the
tables); if a worker dies, the layer it was on is recorded as crashed and the worker is restarted
for the remaining layers. If qconv fails, its columns show "fail".

ISA emulation (--emulate ISA)
-----------------------------
The project's performance targets are stated for an AVX2-only CPU (no AVX-512, no VNNI), where
fbgemm and ONNX Runtime multiply u8 x s8 with int16-pair-saturating `vpmaddubsw` kernels. With
`--emulate avx2` (or avx-vnni, avx512, avx512-vnni; default none = this CPU as it is) every peer
worker first enables the CPUID-faulting shim tools/golden/cpuidmask.c (built and loaded by
tools/golden/cpuidmask.py, shared with tools/golden/gen_onnx.py) in the matching mode, BEFORE
importing numpy, torch or onnxruntime: from then on every CPUID instruction of the worker traps and
is answered with the real values minus the masked features, so MLAS, FBGEMM, oneDNN, cpuinfo and
ATen dispatch as on a CPU with that ISA (mode 1, avx2: no AVX-512, no VNNI of any kind; 2, avx-vnni:
AVX2 + AVX-VNNI; 3, avx512: AVX-512 F/CD/BW/DQ/VL without VNNI; 4, avx512-vnni: AVX-512 + AVX512-VNNI,
AVX-VNNI hidden; all hide AMX, AVX-VNNI-INT8 and AVX10). The peers then behave as on such a
machine's instruction set, but caches, clocks, memory bandwidth and the core count are this
machine's: the numbers are "AVX2 kernels on this Xeon", not a measurement of a real AVX2 CPU.
Needs Linux x86-64, the cpuid_fault CPU flag and gcc; the mask can only remove features.

Each worker verifies the mask before timing anything, and exits (status 3) if it did not take effect;
the driver then aborts the whole run (status 3, no tables): CPUID leaf 7 / 7.1 seen through the shim
must show exactly the requested (avx2, avx512, avx512_vnni, avx_vnni) set and the shim must have
trapped; torch workers check torch.backends.cpu.get_cpu_capability() (AVX2 for avx2 / avx-vnni,
AVX512 for avx512 / avx512-vnni), cpuinfo's VNNI answer (torch.cpu._is_vnni_supported(), True only
for avx512-vnni) and run the forum seed layer (README) through fbgemm -- 7 (saturated int16 pairs)
on every ISA but avx512-vnni (FBGEMM has no AVX-VNNI kernels), 0 there -- and through their own
engine (x86 sends the asymmetric seed weights to fbgemm: same as fbgemm; qnnpack: 0); the ORT
worker runs the seed layer with OC = 2 (MLAS's GEMM path) with the timing sessions' options: [7, 7]
on avx2 / avx512, [0, 0] on the VNNI ISAs. The same checks run without --emulate and are reported
against this CPU's own class. CPUID instructions trapped inside the timed calls are counted per
measurement ("cpuid_traps"; each would be a signal round trip in the timed region; 0 on the layers tried).

qconv is not masked; it runs with `--kernel` matching the ISA: avx2 -> avx2, avx-vnni -> avx-vnni,
avx512-vnni -> avx512-vnni, and avx512 -> avx2 (qconv has no AVX-512 kernel set without VNNI; the
report says so). The kernel set qconv reports for every layer is checked against the request.
Without --emulate qconv uses its default (QCONV_KERNEL, else the best this CPU has).

The JSON's environment.emulation records the mode, the shim mode, the host's ISA class, the qconv
kernel set requested and reported, one check record per worker (CPUID bits and leaf 7 registers,
traps, observed vs expected behaviour) and the CPUID traps inside timed calls; the report header
prints the same.

How to run
----------
    cd /work/main && cargo build --release
    /work/venv/bin/python tools/bench/peers.py                       # threads 1 and 2, all layers
    /work/venv/bin/python tools/bench/peers.py --threads 1,2 --markdown --json out.json
    /work/venv/bin/python tools/bench/peers.py --layers r18_3x3_64_56,mv2_dw3x3_144_56 --threads 2
    /work/venv/bin/python tools/bench/peers.py --emulate avx2 --json out-avx2.json   # AVX2-only peers
Options: --threads 1,2 ; --layers a,b ; --emulate none|avx2|avx-vnni|avx512|avx512-vnni ; --qconv PATH (default target/release/qconv, relative to the
repository root) ; --json OUT (all raw numbers + environment) ; --markdown ; --time-ms 500 ;
--min-runs 10 ; --peers fbgemm,x86,qnnpack,onnxruntime (subset to time) ; --retries 3 ;
--max-foreign 0.1 ; --quiet-wait 60. Progress goes to stderr, the tables to stdout.
Needs: python with torch (quantized CPU engines), onnxruntime, onnx, numpy.

Tables
------
One per thread count: qconv ms and GOPS, the GOPS of each peer, the best of (fbgemm, ORT) -- the
issue's yardstick, "the faster of fbgemm and ORT" -- and the best of all four peers, the ratios
qconv GOPS / best GOPS (> 1: qconv is faster), and the geometric mean of qconv / best(fbgemm, ORT)
over the layers from r50_conv1_7x7s2 down (the two tiny layers are excluded). A second table gives
the tiny layers (seed, lenet) as median latencies in microseconds, with each framework's per-call
floor (PyTorch: an nn.Identity module on the same input; ORT: a one-node Identity model through the
same IOBinding path), measured the same way.

Caveats
-------
* It is a small VM: even uncontended, medians move by several percent between runs (more on the
  small layers). Compare ratios, not absolute numbers, and rerun before trusting a difference under
  ~10%. The contention check sees other processes in this VM (and hypervisor steal), not memory-
  bandwidth or cache pressure from neighbours on the host.
* Python call overhead is inside the peers' timed region (module __call__, ORT run bindings: a few
  microseconds); qconv is timed from Rust. This dominates seed/lenet -- use the microsecond table
  and the floors there; it is negligible for the other layers.
* The PyTorch peers take an already channels_last input and return a channels_last output, so they
  do no NCHW<->NHWC conversion; qconv (NCHW in/out) and ORT (transposes in the graph) do.
* With 2 threads on a 2-core machine every pool uses all cores; ORT's worker threads spin between
  calls (default allow_spinning), as in normal use.
* fbgemm's depthwise kernels are AVX2 (vpmaddubsw, saturating) even on VNNI CPUs; fbgemm's other
  paths and oneDNN use VNNI here. The numbers are only valid for this CPU (and, with --emulate, for
  the emulated ISA's kernels on this CPU's caches, clocks and memory).
* --emulate changes what CPUID reports, not what the CPU can execute: code that used AVX-512
  without asking CPUID would still run it (the seed checks show that the int8 paths did switch).
  Clocks are this machine's: a real AVX2 CPU has other frequencies, caches and memory.
* The x86 engine's routing (oneDNN vs fbgemm) is inferred from PyTorch's rule (Linux, VNNI,
  groups <= 100, symmetric weights), not observed per call. VNNI is cpuinfo's answer, so under
  --emulate avx2 / avx-vnni / avx512 every layer routes to fbgemm, as on such a CPU. (Checked once on the suite's data:
  x86 output == fbgemm's saturating depthwise output on mv2_dw3x3_144_56, exact on the 96-group
  layer.)
* torch 2.15 warns that the quantized tensor creation functions used here are deprecated; the
  warnings are silenced in the workers.
* "-" in a table: peer not requested (--peers); "fail": it raised or crashed (see "Failures").
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# name, C, HxW, OC, kernel, stride, pad, groups  (crates/qconv/src/bench.rs, SUITE)
SUITE = [
    ("seed_5x5_1to1", 1, 5, 1, 5, 1, 0, 1),
    ("lenet_5x5_1to6_32", 1, 32, 6, 5, 1, 0, 1),
    ("r50_conv1_7x7s2", 3, 224, 64, 7, 2, 3, 1),
    ("r18_3x3_64_56", 64, 56, 64, 3, 1, 1, 1),
    ("r18_3x3_128_28", 128, 28, 128, 3, 1, 1, 1),
    ("r18_3x3_256_14", 256, 14, 256, 3, 1, 1, 1),
    ("r18_3x3_512_7", 512, 7, 512, 3, 1, 1, 1),
    ("r50_1x1_256to64_56", 256, 56, 64, 1, 1, 0, 1),
    ("r50_1x1_1024to256_14", 1024, 14, 256, 1, 1, 0, 1),
    ("mv2_dw3x3_144_56", 144, 56, 144, 3, 1, 1, 144),
    ("mv2_dw3x3s2_96_112", 96, 112, 96, 3, 2, 1, 96),
    ("mv2_pw_32to192_112", 32, 112, 192, 1, 1, 0, 1),
]
TINY = ("seed_5x5_1to1", "lenet_5x5_1to6_32")
GEOMEAN_FROM = "r50_conv1_7x7s2"
PEERS = ("fbgemm", "x86", "qnnpack", "onnxruntime")
ISSUE_PEERS = ("fbgemm", "onnxruntime")  # "the faster of fbgemm and ORT"
X_SCALE, X_ZP, Y_ZP = 0.02, 128, 128
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
GOLDEN = os.path.join(REPO, "tools", "golden")  # cpuidmask.py / cpuidmask.c: the CPUID shim

# --emulate ISA -> qconv's --kernel. qconv has no AVX-512 kernel set without VNNI, so "avx512" runs
# qconv's AVX2 kernels (the peers still see AVX-512 F/BW/DQ/VL).
EMULATE = ("none", "avx2", "avx-vnni", "avx512", "avx512-vnni")
QCONV_KERNEL = {"avx2": "avx2", "avx-vnni": "avx-vnni", "avx512": "avx2", "avx512-vnni": "avx512-vnni"}
QCONV_KERNEL_NOTE = {"avx512": "qconv has no AVX-512 kernel set without VNNI: its AVX2 kernels are used"}
# The forum seed layer (README): 5x5 input of 200 (scale 0.012728, zp 33), this int8 weight (scale
# 0.00292, zp -11), output scale 0.02091, zp 0. Exact answer 0; 7 where u8 x s8 products are summed
# in saturating int16 pairs (vpmaddubsw).
SEED_W = [9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31,
          50, 48, 23, -3, 64, -87, -91]


# ----------------------------------------------------------------------------------------------
# Layers and data (identical to bench.rs)

class Layer:
    def __init__(self, name, c, size, oc, k, stride, pad, groups):
        self.name, self.c, self.size, self.oc, self.k = name, c, size, oc, k
        self.stride, self.pad, self.groups = stride, pad, groups
        self.cg = c // groups
        self.out = (size + 2 * pad - k) // stride + 1
        self.macs = oc * self.out * self.out * self.cg * k * k
        self.out_scale = X_SCALE * 0.002 * math.sqrt(self.cg * k * k) * 128.0

    def data(self):
        """Input (1,C,H,W) uint8, weight (OC,C/G,k,k) int8, weight scales float64, bias float32."""
        import numpy as np
        n_in = self.c * self.size * self.size
        n_w = self.oc * self.cg * self.k * self.k
        r = lcg_stream(0x5EED ^ len(self.name), n_in + n_w)
        x = (r[:n_in] % 256).astype(np.uint8).reshape(1, self.c, self.size, self.size)
        w = ((r[n_in:] % 256).astype(np.int32) - 128).astype(np.int8)
        w = w.reshape(self.oc, self.cg, self.k, self.k)
        # bench.rs computes the scale in f32, then widens to f64
        ws = np.array([np.float32(0.002 + 0.0001 * (oc % 7)) for oc in range(self.oc)],
                      dtype=np.float32).astype(np.float64)
        bias = np.array([(oc % 5) * 0.25 - 0.5 for oc in range(self.oc)], dtype=np.float32)
        return x, w, ws, bias


def lcg_stream(seed, n):
    """The outputs of bench.rs's Lcg (state = state*a + c mod 2^64, output state >> 33)."""
    import numpy as np
    a, c, mask = 6364136223846793005, 1442695040888963407, (1 << 64) - 1
    block = 4096
    first, s = [], seed & mask
    for _ in range(min(block, n)):
        s = (s * a + c) & mask
        first.append(s)
    states = np.empty(max(n, 1), dtype=np.uint64)
    states[: len(first)] = np.array(first, dtype=np.uint64)
    # jump ahead by `block` steps: s' = A s + C
    big_a, big_c = 1, 0
    for _ in range(block):
        big_a, big_c = (big_a * a) & mask, (big_c * a + c) & mask
    big_a, big_c = np.uint64(big_a), np.uint64(big_c)
    with np.errstate(over="ignore"):
        for start in range(block, n, block):
            m = min(block, n - start)
            states[start:start + m] = states[start - block:start - block + m] * big_a + big_c
    return (states[:n] >> np.uint64(33)).astype(np.uint32)


def suite_layers(names=None):
    layers = [Layer(*row) for row in SUITE]
    if not names:
        return layers
    known = {l.name: l for l in layers}
    bad = [n for n in names if n not in known]
    if bad:
        sys.exit(f"unknown layer(s) {', '.join(bad)}; expected some of {', '.join(known)}")
    return [known[n] for n in names]


# ----------------------------------------------------------------------------------------------
# Timing

class CpuLoad:
    """CPU used by *other* processes (and stolen by the hypervisor) over a window, in cores.

    foreign = (busy CPU time of the whole machine from /proc/stat) - (our own CPU time), divided by
    the wall time; `own` returns our CPU seconds (this process, or the waited-for children). On a
    2-core machine one competing busy process ruins a 2-thread measurement (the pools' barriers wait
    for a descheduled thread: calls then take whole scheduler ticks), so measurements are checked
    with this and retried. Returns None where /proc/stat does not exist."""

    TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, own):
        self.own = own

    @classmethod
    def stat(cls):
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / cls.TCK, (v[7] if len(v) > 7 else 0) / cls.TCK

    def start(self):
        self.t0, self.s0, self.o0 = time.monotonic(), self.stat(), self.own()

    def stop(self):
        dt = max(time.monotonic() - self.t0, 1e-9)
        s1, o1 = self.stat(), self.own()
        if self.s0 is None or s1 is None:
            return None, None
        foreign = (s1[0] - self.s0[0]) - (o1 - self.o0)
        return max(foreign, 0.0) / dt, max(s1[1] - self.s0[1], 0.0) / dt


def own_process_cpu():
    return time.process_time()


def own_children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + time.process_time()


def wait_quiet(cfg, own=own_process_cpu):
    """Sleeps until the rest of the machine uses < cfg.max_foreign cores over a 0.3 s window (at
    most cfg.quiet_wait seconds). Returns the seconds waited."""
    t0 = time.monotonic()
    load = CpuLoad(own)
    while True:
        load.start()
        time.sleep(0.3)
        foreign, steal = load.stop()
        if foreign is None or foreign + steal < cfg.max_foreign or time.monotonic() - t0 > cfg.quiet_wait:
            return time.monotonic() - t0
        time.sleep(1.0)


def time_calls(fn, cfg):
    """Warm up, then time calls one by one until cfg.min_runs and cfg.budget_s are both reached."""
    t0 = time.perf_counter()
    warm = 0
    while warm < 3 or (time.perf_counter() - t0 < 0.1 and warm < 1000):
        fn()
        warm += 1
    gc_was = gc.isenabled()
    gc.disable()
    traps0 = CPUID_TRAPS() if CPUID_TRAPS else None
    load = CpuLoad(own_process_cpu)
    try:
        runs = []
        clock = time.perf_counter_ns
        load.start()
        start = clock()
        limit = int(cfg.budget_s * 1e9)
        while len(runs) < cfg.min_runs or (clock() - start < limit and len(runs) < 200_000):
            t = clock()
            fn()
            runs.append(clock() - t)
        foreign, steal = load.stop()
    finally:
        if gc_was:
            gc.enable()
    runs.sort()
    res = {"runs": len(runs), "median_ms": statistics.median(runs) / 1e6, "min_ms": runs[0] / 1e6,
           "foreign_cores": foreign, "steal_cores": steal}
    if traps0 is not None:
        # CPUID instructions trapped by the shim during the timed calls (each one is a signal
        # round trip inside the timed region; expected 0)
        res["cpuid_traps"] = CPUID_TRAPS() - traps0
    return res


def contention(res):
    f, s = res.get("foreign_cores"), res.get("steal_cores")
    return None if f is None else f + (s or 0.0)


def measure(fn, cfg):
    """time_calls after waiting for a quiet machine; repeated (up to cfg.retries more times) while
    other processes used >= cfg.max_foreign cores during the timing. Keeps the first clean attempt,
    else the least disturbed one, flagged "contended"."""
    best, waited = None, 0.0
    for attempt in range(cfg.retries + 1):
        waited += wait_quiet(cfg)
        res = time_calls(fn, cfg)
        res["attempts"] = attempt + 1
        c = contention(res)
        if best is None or (c is not None and c < contention(best)):
            best = res
        if c is None or c < cfg.max_foreign:
            break
    best["attempts"] = attempt + 1
    best["waited_s"] = round(waited, 2)
    c = contention(best)
    best["contended"] = c is not None and c >= cfg.max_foreign
    return best


CPUID_TRAPS = None  # set in workers running under the CPUID shim: () -> traps so far


def with_gops(result, layer):
    result["gops"] = 2.0 * layer.macs / (result["median_ms"] / 1e3) / 1e9
    return result


# ----------------------------------------------------------------------------------------------
# Workers (run in child processes; one JSON object per line on stdout)

def emit(obj):
    sys.stdout.write("@@ " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def torch_env():
    import torch
    cfg = torch.__config__.show()
    keep = [ln.strip() for ln in cfg.splitlines()
            if any(k in ln for k in ("oneDNN", "MKL-DNN", "OpenMP", "CPU capability", "GCC"))]
    flags = [f for f in ("USE_FBGEMM", "USE_PYTORCH_QNNPACK", "USE_XNNPACK") if f"-D{f}" in cfg]
    par = [ln.strip() for ln in torch.__config__.parallel_info().splitlines()
           if "num_threads" in ln or "parallel backend" in ln or "omp_get_max" in ln]
    return {
        "torch": torch.__version__,
        "git": torch.version.git_version,
        "engines": list(torch.backends.quantized.supported_engines),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "vnni": bool(torch.cpu._is_vnni_supported()),
        "config": keep,
        "build_flags": flags,
        "parallel_info": par,
    }


def torch_seed(engine):
    """The forum seed layer through torch.ao.nn.quantized.Conv2d with `engine`: its output integer."""
    import torch
    from torch.ao.nn.quantized import Conv2d as QConv2d
    torch.backends.quantized.engine = engine
    x = torch._make_per_tensor_quantized_tensor(torch.full((1, 1, 5, 5), 200, dtype=torch.uint8),
                                                0.012728, 33)
    w = torch._make_per_tensor_quantized_tensor(
        torch.tensor(SEED_W, dtype=torch.int8).reshape(1, 1, 5, 5), 0.00292, -11)
    m = QConv2d(1, 1, 5)
    m.set_weight_bias(w, torch.zeros(1))
    m.scale, m.zero_point = 0.02091, 0
    with torch.inference_mode():
        return int(m(x).int_repr().item())


def worker_torch(engine, threads, layers, cfg, check):
    import numpy as np
    import torch
    from torch.ao.nn.quantized import Conv2d as QConv2d

    torch.set_num_threads(threads)
    # ISA checks: ATen's capability and cpuinfo's VNNI answer (both read CPUID), and what FBGEMM
    # computes on the forum seed layer (7: saturating vpmaddubsw pairs, 0: exact), plus the seed
    # layer through this worker's own engine.
    observed = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "torch_vnni": bool(torch.cpu._is_vnni_supported()),
                "seed_fbgemm": torch_seed("fbgemm")}
    if engine != "fbgemm":
        observed[f"seed_{engine}"] = torch_seed(engine)
    torch.backends.quantized.engine = engine
    env = torch_env()
    env["quantized_engine"] = torch.backends.quantized.engine
    env["num_threads"] = torch.get_num_threads()
    report_isa_check(env, check, observed)
    vnni = env["vnni"] and sys.platform.startswith("linux")
    for layer in layers:
        emit({"start": layer.name})
        try:
            x_np, w_np, ws, bias = layer.data()
            qw = torch._make_per_channel_quantized_tensor(
                torch.from_numpy(w_np.copy()), torch.from_numpy(ws),
                torch.zeros(layer.oc, dtype=torch.long), 0)
            m = QConv2d(layer.c, layer.oc, layer.k, stride=layer.stride, padding=layer.pad,
                        groups=layer.groups, bias=True)
            m.set_weight_bias(qw, torch.from_numpy(bias.copy()))  # prepacks with `engine`
            m.scale, m.zero_point = float(layer.out_scale), Y_ZP
            m.eval()
            x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_np.copy()), X_SCALE, X_ZP)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                y = m(x)
                assert y.dtype == torch.quint8 and tuple(y.shape) == (1, layer.oc, layer.out, layer.out)
                res = measure(lambda: m(x), cfg)
            route = engine
            if engine == "x86":
                route = "onednn" if (vnni and layer.groups <= 100) else "fbgemm"
            res.update(layer=layer.name, route=route,
                       output_channels_last=bool(y.is_contiguous(memory_format=torch.channels_last)))
            if layer.name in TINY:
                ident = torch.nn.Identity()
                res["floor"] = measure(lambda: ident(x), cfg)
            emit({"result": with_gops(res, layer)})
        except Exception as e:  # noqa: BLE001 -- record and go on
            emit({"result": {"layer": layer.name, "error": f"{type(e).__name__}: {e}".strip()[:500]}})


def qlinearconv_model(layer):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _, w, ws, bias = layer.data()
    ws32 = ws.astype(np.float32)
    b32 = np.round(bias.astype(np.float64) / (np.float64(np.float32(X_SCALE)) * ws32.astype(np.float64)))
    b32 = b32.astype(np.int32)
    inits = [
        numpy_helper.from_array(np.array(X_SCALE, dtype=np.float32), "x_scale"),
        numpy_helper.from_array(np.array(X_ZP, dtype=np.uint8), "x_zp"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(ws32, "w_scale"),
        numpy_helper.from_array(np.zeros(layer.oc, dtype=np.int8), "w_zp"),
        numpy_helper.from_array(np.array(layer.out_scale, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(np.array(Y_ZP, dtype=np.uint8), "y_zp"),
        numpy_helper.from_array(b32, "b"),
    ]
    node = helper.make_node(
        "QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "b"], ["y"],
        kernel_shape=[layer.k, layer.k], strides=[layer.stride] * 2, pads=[layer.pad] * 4,
        dilations=[1, 1], group=layer.groups)
    graph = helper.make_graph(
        [node], layer.name,
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, layer.c, layer.size, layer.size])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, layer.oc, layer.out, layer.out])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def seed_qlinearconv_model():
    """The forum seed layer as a QLinearConv with the weight duplicated to OC = 2."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    inits = [
        numpy_helper.from_array(np.array(0.012728, dtype=np.float32), "x_scale"),
        numpy_helper.from_array(np.array(33, dtype=np.uint8), "x_zp"),
        numpy_helper.from_array(np.array(SEED_W * 2, dtype=np.int8).reshape(2, 1, 5, 5), "w"),
        numpy_helper.from_array(np.array(0.00292, dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array(-11, dtype=np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.02091, dtype=np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "y_zp"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale",
                                            "y_zp"], ["y"], kernel_shape=[5, 5])
    graph = helper.make_graph(
        [node], "seed", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def identity_model(shape):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def ort_options(threads, optimized_path=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def ort_bound_call(sess, x_np, out_shape):
    import numpy as np
    import onnxruntime as ort
    y_np = np.empty(out_shape, dtype=np.uint8)
    x_v = ort.OrtValue.ortvalue_from_numpy(x_np)
    y_v = ort.OrtValue.ortvalue_from_numpy(y_np)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", x_v)
    binding.bind_ortvalue_output("y", y_v)
    keep = (x_v, y_v, x_np, y_np)  # keep the buffers alive

    def call():
        sess.run_with_iobinding(binding)
    return call, y_np, keep


def worker_ort(threads, layers, cfg, check):
    import numpy as np
    import onnx
    import onnxruntime as ort

    env = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
           "device": ort.get_device()}
    try:
        env["build_info"] = ort.capi._pybind_state.get_build_info()
    except Exception:  # noqa: BLE001
        pass
    env["session_options"] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                              "graph_optimization_level": "ORT_ENABLE_ALL",
                              "execution_mode": "ORT_SEQUENTIAL",
                              "providers": ["CPUExecutionProvider"],
                              "timed_call": "run_with_iobinding, preallocated uint8 NCHW in/out"}
    providers = ["CPUExecutionProvider"]
    # ISA check: the forum seed layer with OC = 2 (so MLAS takes its GEMM path, not the exact
    # depthwise kernel), with the timing sessions' options: [7, 7] where MLAS sums u8 x s8 pairs in
    # saturating int16 (AVX2, AVX-512 without VNNI), [0, 0] with VNNI.
    seed = ort.InferenceSession(seed_qlinearconv_model(), ort_options(threads), providers=providers)
    y = seed.run(None, {"x": np.full((1, 1, 5, 5), 200, dtype=np.uint8)})[0]
    report_isa_check(env, check, {"seed_onnxruntime": [int(v) for v in y.ravel()]})
    del seed
    tmp = tempfile.mkdtemp(prefix="qconv-peers-")
    for layer in layers:
        emit({"start": layer.name})
        try:
            blob = qlinearconv_model(layer)
            x_np = np.ascontiguousarray(layer.data()[0])
            out_shape = (1, layer.oc, layer.out, layer.out)
            # the graph ORT actually runs (separate throw-away session that saves it)
            graph = None
            try:
                path = os.path.join(tmp, layer.name + ".onnx")
                ort.InferenceSession(blob, ort_options(threads, path), providers=providers)
                g = onnx.load(path).graph
                graph = [(n.domain + "." if n.domain else "") + n.op_type for n in g.node]
            except Exception as e:  # noqa: BLE001
                graph = [f"unavailable: {e}"[:200]]
            sess = ort.InferenceSession(blob, ort_options(threads), providers=providers)
            ref = sess.run(None, {"x": x_np})[0]
            call, y_np, keep = ort_bound_call(sess, x_np, out_shape)
            call()
            if not np.array_equal(ref, y_np):
                raise RuntimeError("IOBinding output differs from session.run output")
            res = measure(call, cfg)
            res.update(layer=layer.name, route="QLinearConv", optimized_graph=graph)
            plain = measure(lambda: sess.run(None, {"x": x_np}), cfg)
            res["session_run"] = with_gops(plain, layer)
            if layer.name in TINY:
                isess = ort.InferenceSession(identity_model(list(x_np.shape)), ort_options(threads),
                                             providers=providers)
                icall, _, ikeep = ort_bound_call(isess, x_np, x_np.shape)
                res["floor"] = measure(icall, cfg)
                del ikeep
            emit({"result": with_gops(res, layer)})
            del keep, call, sess
        except Exception as e:  # noqa: BLE001
            emit({"result": {"layer": layer.name, "error": f"{type(e).__name__}: {e}".strip()[:500]}})


def load_cpuidmask():
    """tools/golden/cpuidmask.py (standard library only: safe to import before numpy)."""
    if GOLDEN not in sys.path:
        sys.path.insert(0, GOLDEN)
    import cpuidmask
    return cpuidmask


def expected_behaviour(isa):
    """What a process that sees `isa` observes (measured on this machine under each shim mode, and
    on the native AVX-512-VNNI CPU). FBGEMM has no AVX-VNNI kernels, so it saturates on every ISA but
    AVX-512-VNNI; MLAS uses AVX-VNNI. The x86 engine sends the seed layer (asymmetric weights) to
    FBGEMM; QNNPACK is exact everywhere."""
    vnni512 = isa == "avx512-vnni"
    return {
        "torch_cpu_capability": "AVX512" if isa in ("avx512", "avx512-vnni") else "AVX2",
        "torch_vnni": vnni512,
        "seed_fbgemm": 0 if vnni512 else 7,
        "seed_x86": 0 if vnni512 else 7,
        "seed_qnnpack": 0,
        "seed_onnxruntime": [0, 0] if isa in ("avx-vnni", "avx512-vnni") else [7, 7],
    }


def worker_fatal(msg):
    emit({"fatal": msg})
    sys.exit(3)


def emulation_setup(emulate):
    """Runs first in a worker, before numpy / torch / onnxruntime are imported. With --emulate ISA:
    builds and enables the CPUID shim in ISA's mode and checks CPUID leaf 7 / 7.1 through it (and that
    it trapped); any failure ends the worker (exit 3) before anything is timed. Returns the check
    record that report_isa_check completes."""
    global CPUID_TRAPS
    cm = load_cpuidmask()
    if emulate == "none":
        flags = cm.cpu_flags()
        return {"emulate": "none", "isa": cm.host_isa(flags),
                "cpuid_features": dict(zip(cm.FEATURE_NAMES, cm.flag_features(flags))),
                "cpuid_source": "/proc/cpuinfo (no shim)"}
    loaded = [m for m in ("numpy", "torch", "onnxruntime", "onnx") if m in sys.modules]
    if loaded:
        worker_fatal(f"--emulate {emulate}: {', '.join(loaded)} imported before the CPUID shim")
    try:
        lib, check = cm.enable_verified(emulate)
    except cm.MaskError as e:
        worker_fatal(f"--emulate {emulate}: {e}")
    CPUID_TRAPS = lambda: cm.trap_count(lib)  # noqa: E731
    check["emulate"] = emulate
    check["cpuid_source"] = "CPUID through the shim"
    check["traps_at_enable"] = check.pop("traps")
    return check


def report_isa_check(env, check, observed):
    """Compares `observed` with what check["isa"] implies, stores the check in env and emits env.
    Under --emulate a mismatch ends the worker before timing (the mask did not take effect)."""
    want = expected_behaviour(check["isa"])
    check["observed"] = observed
    check["expected"] = {k: want[k] for k in observed}
    check["problems"] = [f"{k} = {v!r}, expected {want[k]!r}" for k, v in observed.items() if v != want[k]]
    check["ok"] = not check["problems"]
    if CPUID_TRAPS:
        check["traps_before_timing"] = CPUID_TRAPS()
    env["isa_check"] = check
    emit({"env": env})
    if check["problems"] and check["emulate"] != "none":
        worker_fatal(f"--emulate {check['emulate']}: the mask did not take effect: "
                     + "; ".join(check["problems"]))


def worker_main(args):
    import warnings
    warnings.filterwarnings("ignore")  # deprecation noise; keeps a crash's stderr tail readable
    check = emulation_setup(args.emulate)  # before numpy / torch / onnxruntime are imported
    layers = suite_layers(args.layers.split(",") if args.layers else None)
    threads = int(args.threads)
    cfg = timing_config(args)
    if args.worker == "onnxruntime":
        worker_ort(threads, layers, cfg, check)
    else:
        worker_torch(args.worker, threads, layers, cfg, check)


def timing_config(args):
    return argparse.Namespace(budget_s=args.time_ms / 1e3, min_runs=args.min_runs, retries=args.retries,
                              max_foreign=args.max_foreign, quiet_wait=args.quiet_wait)


def timing_args(args):
    return ["--time-ms", str(args.time_ms), "--min-runs", str(args.min_runs), "--retries", str(args.retries),
            "--max-foreign", str(args.max_foreign), "--quiet-wait", str(args.quiet_wait),
            "--emulate", args.emulate]


# ----------------------------------------------------------------------------------------------
# Driver

class EmulationFailed(RuntimeError):
    """A worker found that the CPUID shim did not take effect (nothing was timed)."""


def run_worker(peer, threads, layers, args, log):
    """Runs one peer in child processes; restarts after a crash. Returns (env, {layer: result}).
    Raises EmulationFailed when a worker reports that --emulate did not take effect."""
    results, env = {}, None
    todo = [l.name for l in layers]
    while todo:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", peer, "--threads", str(threads),
               "--layers", ",".join(todo), *timing_args(args)]
        log(f"  {peer} (threads {threads}): {len(todo)} layer(s)")
        current = None
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=args.worker_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = (err or "") + f"\nworker timed out after {args.worker_timeout} s"
        for line in out.splitlines():
            if not line.startswith("@@ "):
                continue
            msg = json.loads(line[3:])
            if "env" in msg:
                env = msg["env"]
            elif "fatal" in msg:
                raise EmulationFailed(f"{peer} worker (threads {threads}): {msg['fatal']}")
            elif "start" in msg:
                current = msg["start"]
            elif "result" in msg:
                r = msg["result"]
                results[r["layer"]] = r
                if "error" in r:
                    log(f"    {peer} {r['layer']}: FAILED: {r['error']}")
                current = None
        todo = [n for n in todo if n not in results]
        if not todo:
            break
        why = f"worker exited with code {proc.returncode}"
        if proc.returncode is not None and proc.returncode < 0:
            why = f"worker killed by signal {-proc.returncode}"
        tail = " | ".join((err or "").strip().splitlines()[-3:])
        victim = current if current in todo else todo[0]
        results[victim] = {"layer": victim, "error": f"{why} on this layer; stderr: {tail}"[:800]}
        log(f"    {peer} {victim}: CRASHED: {results[victim]['error']}")
        todo = [n for n in todo if n != victim]
    return env, results


def qconv_bench(qconv, threads, names, args):
    cmd = [qconv, "bench", "--threads", str(threads), "--format", "json", "--engines", "exact",
           "--time-ms", str(args.time_ms), "--layers", ",".join(names)]
    if args.emulate != "none":
        cmd += ["--kernel", QCONV_KERNEL[args.emulate]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout)
    if p.returncode != 0:
        err = [ln for ln in p.stderr.strip().splitlines() if ln.strip() and "backtrace" not in ln
               and not ln.lstrip()[:2].rstrip(":").isdigit()]
        raise RuntimeError(f"exit code {p.returncode}: {' | '.join(err[:4])}"[:500])
    out = {}
    for r in json.loads(p.stdout):
        if r.get("engine") != "exact":
            continue
        # "kernels" reads like "avx2 kernels, planar float32 sums, exact"
        r["kernel_set"] = (r.get("kernels") or "?").split()[0]
        if args.emulate != "none" and r["kernel_set"] != QCONV_KERNEL[args.emulate]:
            raise RuntimeError(f"qconv ran the {r['kernel_set']} kernels, not the requested "
                               f"{QCONV_KERNEL[args.emulate]} ({r.get('kernels')})")
        out[r["layer"]] = r
    return out, cmd


def run_qconv(qconv, threads, layers, args, log):
    """One `qconv bench` process per layer (so a layer that panics only loses its own numbers, and
    each layer gets its own contention check), retried like the peers' measurements."""
    cfg = timing_config(args)
    log(f"  qconv (threads {threads}): {len(layers)} layer(s)")
    out, cmd = {}, None
    for l in layers:
        best, waited = None, 0.0
        for attempt in range(cfg.retries + 1):
            waited += wait_quiet(cfg, own_children_cpu)
            load = CpuLoad(own_children_cpu)
            load.start()
            try:
                res, c = qconv_bench(qconv, threads, [l.name], args)
                cmd = cmd or c
            except Exception as e:  # noqa: BLE001
                best = {"layer": l.name, "error": f"{type(e).__name__}: {e}"[:500]}
                log(f"    qconv {l.name}: FAILED: {best['error']}")
                break
            foreign, steal = load.stop()
            r = res.get(l.name) or {"layer": l.name, "error": "missing from qconv bench output"}
            r.update(foreign_cores=foreign, steal_cores=steal)
            c = contention(r)
            if best is None or (c is not None and c < contention(best)):
                best = r
            if c is None or c < cfg.max_foreign:
                break
        if "error" not in best:
            best.update(attempts=attempt + 1, waited_s=round(waited, 2))
            c = contention(best)
            best["contended"] = c is not None and c >= cfg.max_foreign
        out[l.name] = best
    return out, cmd


def machine_env(qconv):
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                env["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = set()
        for line in info.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        env["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    try:
        env["qconv_version"] = subprocess.run([qconv, "--version"], capture_output=True, text=True).stdout.strip()
        env["qconv_binary"] = qconv
        env["qconv_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(qconv)))
        import hashlib
        with open(qconv, "rb") as fh:
            env["qconv_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    except OSError as e:
        env["qconv_error"] = str(e)
    return env


def loadavg():
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[:3]
    except OSError:
        return None


def gops(r):
    return r.get("gops") if r and "error" not in r else None


def best_of(row, names):
    cands = [(gops(row.get(n)), n) for n in names if gops(row.get(n))]
    return max(cands) if cands else (None, None)


def summarize(layers, per_thread):
    """per_thread: {threads: {peer: {layer: result}}} -> {threads: {rows, geomean}}."""
    summary = {}
    for t, by_peer in per_thread.items():
        rows = []
        for l in layers:
            row = {p: by_peer.get(p, {}).get(l.name) for p in ("qconv",) + PEERS}
            q = gops(row["qconv"])
            bi, bin_ = best_of(row, ISSUE_PEERS)
            ba, ban = best_of(row, PEERS)
            rows.append({
                "layer": l.name,
                "qconv_ms": row["qconv"].get("median_ms") if gops(row["qconv"]) else None,
                "qconv_gops": q,
                **{f"{p}_gops": gops(row[p]) for p in PEERS},
                "best_fbgemm_ort": bin_, "best_fbgemm_ort_gops": bi,
                "best_peer": ban, "best_peer_gops": ba,
                "ratio_vs_fbgemm_ort": q / bi if q and bi else None,
                "ratio_vs_all": q / ba if q and ba else None,
                "contended": [p for p in ("qconv",) + PEERS if row[p] and row[p].get("contended")],
            })
        names = [l.name for l in layers]
        start = names.index(GEOMEAN_FROM) if GEOMEAN_FROM in names else len(names)
        sel = [r["ratio_vs_fbgemm_ort"] for r in rows[start:] if r["layer"] not in TINY]
        ok = [x for x in sel if x]
        sel_all = [r["ratio_vs_all"] for r in rows[start:] if r["layer"] not in TINY and r["ratio_vs_all"]]
        summary[t] = {
            "rows": rows,
            "geomean_vs_fbgemm_ort": math.exp(sum(map(math.log, ok)) / len(ok)) if ok else None,
            "geomean_vs_fbgemm_ort_layers": len(ok), "geomean_layers_expected": len(sel),
            "geomean_vs_all": math.exp(sum(map(math.log, sel_all)) / len(sel_all)) if sel_all else None,
        }
    return summary


def fmt_table(header, rows, markdown, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    def line(r):
        return "  ".join(s.ljust(w) if a == "l" else s.rjust(w) for s, w, a in zip(r, widths, align))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def f(x, digits=1):
    return "fail" if x is None else f"{x:.{digits}f}"


ISA_TEXT = {
    "avx2": "an AVX2-only CPU (no AVX-512, no VNNI of any kind)",
    "avx-vnni": "a CPU with AVX2 and AVX-VNNI but no AVX-512",
    "avx512": "a CPU with AVX-512 (F/CD/BW/DQ/VL) but no VNNI of any kind",
    "avx512-vnni": "a CPU with AVX-512 and AVX512-VNNI but no AVX-VNNI (Cascade Lake like)",
}


def emulation_lines(env):
    """The report header's ISA paragraph: emulation mode, qconv's kernels, per-worker checks."""
    em = env.get("emulation") or {}
    isa = em.get("emulate", "none")
    reported = ", ".join(em.get("qconv_kernel_sets_reported") or []) or "?"
    out = []
    if isa == "none":
        out.append(f"ISA: native (no --emulate): the peers dispatch on this CPU's own CPUID "
                   f"({em.get('host_isa')} class); qconv: its default kernel set (reported: {reported}).")
    else:
        note = f"; {em['qconv_kernel_note']}" if em.get("qconv_kernel_note") else ""
        out.append(f"ISA emulation: --emulate {isa}. Every peer worker enabled the CPUID shim "
                   f"(tools/golden/cpuidmask.c, mode {em.get('cpuidmask_mode')}) before importing numpy, "
                   f"torch or onnxruntime, so the peers see {ISA_TEXT[isa]} and run the kernels they would "
                   f"pick on such a CPU; caches, clocks, memory and core count are still this machine's "
                   f"({em.get('host_isa')} class). qconv: --kernel {em.get('qconv_kernel_requested')} "
                   f"(reported: {reported}){note}.")
    checks = em.get("peer_checks") or []
    if checks:
        out.append("")
        out.append("Checks in each worker (seed = the forum layer: 7 = saturating int16 pairs, 0 = exact):")
        for c in checks:
            feats = c.get("cpuid_features") or {}
            obs = c.get("observed") or {}
            parts = [f"CPUID ({', '.join(feats)}) = ({', '.join(str(int(v)) for v in feats.values())}) "
                     f"from {c.get('cpuid_source')}"]
            if "traps_before_timing" in c:
                parts[-1] += f", {c['traps_before_timing']} CPUID traps"
            if "torch_cpu_capability" in obs:
                parts.append(f"torch capability {obs['torch_cpu_capability']}, VNNI {obs['torch_vnni']}")
            seeds = [f"{k[5:]} {v}" for k, v in obs.items() if k.startswith("seed_")]
            parts.append("seed " + ", ".join(seeds))
            verdict = "ok" if c.get("ok") else "MISMATCH: " + "; ".join(c.get("problems") or [])
            out.append(f"- {c['peer']}, threads {c['threads']}: {'; '.join(parts)} -- {verdict}")
    tr = em.get("cpuid_traps_in_timed_calls")
    if tr is not None:
        nz = tr.get("nonzero") or []
        out.append("")
        out.append(f"CPUID traps inside the peers' timed calls: "
                   + ("none" if not nz else "; ".join(f"threads {t} {p} {ln}: {n}" for t, p, ln, n in nz))
                   + f" ({tr.get('measurements')} measurements).")
    out.append("")
    return out


def render(layers, summary, per_thread, env, args):
    md = args.markdown
    out = []
    h = "## " if md else "== "
    out.append(f"{'# ' if md else ''}qconv vs peers ({env['machine'].get('cpu', '?')}, "
               f"{env['machine'].get('cpus')} CPUs; torch {env.get('torch', {}).get('torch', '?')}, "
               f"onnxruntime {env.get('onnxruntime', {}).get('onnxruntime', '?')}; "
               f"{env['machine'].get('qconv_version', 'qconv ?')})")
    out.append("")
    out += emulation_lines(env)
    out.append("GOPS = 2 x MACs / median time. ratio = qconv GOPS / peer GOPS (> 1: qconv faster). "
               "best(fb,ORT) = the faster of fbgemm and onnxruntime; best(all) adds x86 and qnnpack. "
               f"Median of >= {args.min_runs} runs lasting >= {args.time_ms} ms after warm-up.")
    out.append("")
    for t, s in summary.items():
        out.append(f"{h}threads = {t}")
        out.append("")
        header = ["layer", "qconv ms", "qconv GOPS", "fbgemm", "x86", "qnnpack", "onnxruntime",
                  "best(fb,ORT)", "best(all)", "qconv/best(fb,ORT)", "qconv/best(all)"]
        rows = []
        for r in s["rows"]:
            star = {p: "*" if p in r["contended"] else "" for p in ("qconv",) + PEERS}
            rows.append([
                r["layer"],
                f(r["qconv_ms"], 4 if (r["qconv_ms"] or 1) < 1 else 3) + star["qconv"],
                f(r["qconv_gops"]) + star["qconv"],
                *[(f(r[f"{p}_gops"]) + star[p]) if p in per_thread[t] else "-" for p in PEERS],
                f"{r['best_fbgemm_ort']} {f(r['best_fbgemm_ort_gops'])}" if r["best_fbgemm_ort"] else "fail",
                f"{r['best_peer']} {f(r['best_peer_gops'])}" if r["best_peer"] else "fail",
                f(r["ratio_vs_fbgemm_ort"], 2),
                f(r["ratio_vs_all"], 2),
            ])
        out.append(fmt_table(header, rows, md))
        out.append("")
        if any(r["contended"] for r in s["rows"]):
            out.append(f"\\* other processes used >= {args.max_foreign} cores during every attempt at this "
                       "measurement (see foreign_cores in the JSON): treat it as unreliable.")
            out.append("")
        n, m = s["geomean_vs_fbgemm_ort_layers"], s["geomean_layers_expected"]
        gm = s["geomean_vs_fbgemm_ort"]
        ga = s["geomean_vs_all"]
        if m:
            out.append(f"Geometric mean of qconv/best(fbgemm,ORT), {GEOMEAN_FROM} and below ({n}/{m} layers): "
                       f"{f(gm, 3)}   (vs best of all peers: {f(ga, 3)})")
            out.append("")
        tiny = [l for l in layers if l.name in TINY]
        if tiny:
            out.append(f"Tiny layers, median latency in microseconds (threads = {t}); "
                       "floor = the framework's per-call overhead (nn.Identity module / ORT Identity model)")
            out.append("")
            th = ["layer", "qconv", "fbgemm", "x86", "qnnpack", "onnxruntime"]
            trows = []
            for l in tiny:
                row = [l.name]
                for p in ("qconv",) + PEERS:
                    r = per_thread[t].get(p, {}).get(l.name)
                    if p not in per_thread[t]:
                        row.append("-")
                        continue
                    row.append(f(r["median_ms"] * 1e3, 2) + ("*" if r.get("contended") else "")
                               if gops(r) else "fail")
                trows.append(row)
            floor = ["(call floor)", "-"]
            for p in PEERS:
                rs = [per_thread[t].get(p, {}).get(l.name) for l in tiny]
                fl = [r["floor"]["median_ms"] for r in rs if r and "floor" in r]
                floor.append(f(min(fl) * 1e3, 2) if fl else "-")
            trows.append(floor)
            out.append(fmt_table(th, trows, md))
            out.append("")
    fails = []
    for t, by_peer in per_thread.items():
        for p, res in by_peer.items():
            for ln, r in res.items():
                if r and "error" in r:
                    fails.append(f"threads {t}, {p}, {ln}: {r['error']}")
    if fails:
        out.append("Failures:")
        out += [f"- {x}" for x in fails]
        out.append("")
    routes = []
    for t, by_peer in per_thread.items():
        x86 = by_peer.get("x86", {})
        fb = [ln for ln, r in x86.items() if r and r.get("route") == "fbgemm"]
        if fb:
            routes.append(f"threads {t}: x86 engine routed to fbgemm for {', '.join(fb)}; oneDNN otherwise")
        break
    out += routes
    te = env.get("torch", {})
    if te:
        out.append(f"torch: engines {te.get('engines')}, cpu capability {te.get('cpu_capability')}, "
                   f"VNNI {te.get('vnni')}, {'; '.join(c for c in te.get('config', []) if 'DNN' in c)}, "
                   f"flags {te.get('build_flags')}")
    la = env.get("loadavg")
    if la:
        out.append("load average (1/5/15 min) before/after each thread count: "
                   + "; ".join(f"threads {x['threads']}: {' '.join(x['before'] or [])} -> "
                               f"{' '.join(x.get('after') or [])}" for x in la))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--layers", default="", help="comma-separated suite layers (default: all)")
    ap.add_argument("--qconv", default="target/release/qconv", help="qconv binary (relative: to repo root)")
    ap.add_argument("--json", metavar="OUT", help="also write all raw numbers as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--peers", default=",".join(PEERS), help="peers to time (default: all four)")
    ap.add_argument("--time-ms", type=int, default=500, help="time budget per measurement (default 500)")
    ap.add_argument("--min-runs", type=int, default=10, help="minimum timed runs (default 10)")
    ap.add_argument("--retries", type=int, default=3,
                    help="re-time a measurement up to this many more times while other processes "
                         "use the CPU (default 3)")
    ap.add_argument("--max-foreign", type=float, default=0.1,
                    help="CPU used by other processes (cores) above which a measurement is retried "
                         "/ flagged (default 0.1)")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="max seconds to wait for a quiet machine before each measurement (default 60)")
    ap.add_argument("--emulate", default="none", choices=EMULATE,
                    help="ISA the peers are made to see through the CPUID shim (tools/golden/cpuidmask.c), "
                         "with qconv on the matching --kernel (default none: this CPU as it is)")
    ap.add_argument("--worker-timeout", type=int, default=1800, help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)

    layers = suite_layers([x for x in args.layers.split(",") if x] or None)
    threads = [int(x) for x in args.threads.split(",") if x]
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            sys.exit(f"unknown peer {p}; expected some of {', '.join(PEERS)}")
    qconv = args.qconv if os.path.isabs(args.qconv) else os.path.join(REPO, args.qconv)
    if not os.path.exists(qconv):
        sys.exit(f"{qconv} not found: build it with `cargo build --release` (or pass --qconv)")

    cm = load_cpuidmask()
    if args.emulate != "none":
        try:
            cm.check_usable(args.emulate)
        except cm.MaskError as e:
            sys.exit(f"--emulate {args.emulate}: {e}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    env = {"machine": machine_env(qconv), "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    env["emulation"] = {
        "emulate": args.emulate,
        "cpuidmask_mode": cm.ISA_MODES.get(args.emulate),
        "host_isa": cm.host_isa(cm.cpu_flags()),
        "qconv_kernel_requested": QCONV_KERNEL.get(args.emulate),  # None: qconv's default
        "qconv_kernel_note": QCONV_KERNEL_NOTE.get(args.emulate),
        "peer_checks": [],
    }
    per_thread, cmds = {}, {}
    for t in threads:
        log(f"threads {t}")
        env.setdefault("loadavg", []).append({"threads": t, "before": loadavg()})
        by_peer = {}
        by_peer["qconv"], cmds[t] = run_qconv(qconv, t, layers, args, log)
        for p in peers:
            try:
                penv, res = run_worker(p, t, layers, args, log)
            except EmulationFailed as e:
                log(f"\nFATAL: {e}\nThe worker stopped before timing anything (no native kernels were "
                    "timed under the emulated name). Aborting the run; no tables.")
                sys.exit(3)
            by_peer[p] = res
            if penv:
                check = penv.pop("isa_check", None)
                if check:
                    env["emulation"]["peer_checks"].append({"peer": p, "threads": t, **check})
                key = "onnxruntime" if p == "onnxruntime" else "torch"
                env.setdefault(key, {k: v for k, v in penv.items() if k not in ("quantized_engine", "num_threads")})
                env.setdefault("engine_checks", []).append(
                    {"peer": p, "threads": t, **{k: penv[k] for k in ("quantized_engine", "num_threads") if k in penv}})
        per_thread[t] = by_peer
        env["loadavg"][-1]["after"] = loadavg()
    env["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    env["emulation"]["qconv_kernel_sets_reported"] = sorted(
        {r["kernel_set"] for by_peer in per_thread.values() for r in by_peer["qconv"].values()
         if "kernel_set" in r})
    traps = [(t, p, ln, sum((m or {}).get("cpuid_traps", 0) for m in (r, r.get("floor"), r.get("session_run"))))
             for t, by_peer in per_thread.items() for p, res in by_peer.items() if p != "qconv"
             for ln, r in res.items() if r and "error" not in r]
    env["emulation"]["cpuid_traps_in_timed_calls"] = (
        None if args.emulate == "none" else {"measurements": len(traps),
                                              "nonzero": [list(x) for x in traps if x[3]]})
    summary = summarize(layers, per_thread)
    text = render(layers, summary, per_thread, env, args)
    print(text)
    if args.json:
        raw = []
        for t, by_peer in per_thread.items():
            for p, res in by_peer.items():
                for ln, r in res.items():
                    raw.append({"threads": t, "peer": p, **r})
        with open(args.json, "w") as fh:
            json.dump({"environment": env, "qconv_commands": {str(k): v for k, v in cmds.items()},
                       "layers": [{"name": l.name, "C": l.c, "HW": l.size, "OC": l.oc, "k": l.k,
                                   "stride": l.stride, "pad": l.pad, "groups": l.groups,
                                   "out_hw": l.out, "macs": l.macs} for l in layers],
                       "results": raw,
                       "summary": {str(k): v for k, v in summary.items()}}, fh, indent=1)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()

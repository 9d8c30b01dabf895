"""Python side of the CPUID-faulting shim in cpuidmask.c (same directory).

Shared by tools/golden/gen_onnx.py (golden cases recorded as a lower ISA would compute them) and
tools/bench/peers.py (``--emulate``: peers timed with the kernels they pick on a lower ISA).

cpuidmask.c is compiled at run time (``gcc -O2 -shared -fPIC``) into a temporary directory, loaded
with ctypes, and enabled with ``arch_prctl(ARCH_SET_CPUID, 0)``: from then on every CPUID
instruction of the process traps (SIGSEGV, handled by the shim) and is answered with the real values
minus the feature bits the mode masks. Libraries that dispatch on CPUID (ONNX Runtime's MLAS,
PyTorch's cpuinfo / FBGEMM / oneDNN / ATen) read it once, at load or first use, so the shim must be
enabled BEFORE numpy, torch or onnxruntime are imported. Needs Linux on x86-64, the ``cpuid_fault``
CPU flag and gcc. The mask can only remove features, never add them.

This module imports nothing but the standard library (it must run before numpy is imported).
"""

import ctypes
import os
import subprocess
import tempfile

# ISA name -> cpuidmask.c mode (all modes also hide AVX-VNNI-INT8, AVX10 and AMX):
#   avx2         1  AVX2 only: no AVX-512, no VNNI
#   avx-vnni     2  AVX2 + AVX-VNNI, no AVX-512
#   avx512       3  AVX-512 F/CD/BW/DQ/VL, no VNNI of any kind
#   avx512-vnni  4  AVX-512 + AVX512-VNNI, AVX-VNNI masked (Cascade Lake like)
ISA_MODES = {
    "avx2": 1,
    "avx-vnni": 2,
    "avx512": 3,
    "avx512-vnni": 4,
}
# The CPUID features (leaf 7 / 7.1) that must be visible after masking, in this order:
FEATURE_NAMES = ("avx2", "avx512", "avx512_vnni", "avx_vnni")  # avx512 = F + BW + DQ + VL
ISA_FEATURES = {
    #              avx2  avx512(F,BW,DQ,VL)  avx512_vnni  avx_vnni
    "avx2":        (True, False, False, False),
    "avx-vnni":    (True, False, False, True),
    "avx512":      (True, True, False, False),
    "avx512-vnni": (True, True, True, False),
}

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpuidmask.c")


class MaskError(RuntimeError):
    """The shim could not be built, enabled, or did not take effect."""


def cpu_flags():
    """The flag set of the first CPU in /proc/cpuinfo (empty when unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_isa(flags):
    """The ISA class of this CPU without a mask (the u8 x s8 kernels ORT's MLAS would pick)."""
    avx512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    if avx512 and "avx512_vnni" in flags:
        return "avx512-vnni"
    if avx512:
        return "avx512"
    if "avx_vnni" in flags:
        return "avx-vnni"
    return "avx2"


def flag_features(flags):
    """FEATURE_NAMES as /proc/cpuinfo reports them (the real CPU, no mask)."""
    return ("avx2" in flags, {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags,
            "avx512_vnni" in flags, "avx_vnni" in flags)


def isa_available(isa, flags):
    need = {"avx2", "fma"}
    if isa == "avx-vnni":
        need |= {"avx_vnni"}
    if isa in ("avx512", "avx512-vnni"):
        need |= {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
    if isa == "avx512-vnni":
        need |= {"avx512_vnni"}
    return need <= flags


def check_usable(isa, flags=None):
    """Raises MaskError when `isa` cannot be emulated here (CPU lacks it, or no cpuid_fault)."""
    flags = cpu_flags() if flags is None else flags
    if isa not in ISA_MODES:
        raise MaskError(f"unknown ISA {isa!r}; expected one of {', '.join(ISA_MODES)}")
    if not isa_available(isa, flags):
        raise MaskError(f"this CPU lacks {isa}; the CPUID mask can only remove features")
    if "cpuid_fault" not in flags:
        raise MaskError("CPU flag cpuid_fault missing: cannot mask CPUID")


def build(src=SOURCE):
    """Compiles cpuidmask.c into a temporary directory and loads it (not yet enabled)."""
    if not os.path.exists(src):
        raise MaskError(f"{src} not found (the CPUID shim source)")
    with tempfile.TemporaryDirectory(prefix="cpuidmask-") as tmp:
        so = os.path.join(tmp, "cpuidmask.so")
        try:
            r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", so, src],
                               capture_output=True, text=True)
        except OSError as e:
            raise MaskError(f"cannot run gcc to compile cpuidmask.c: {e}") from e
        if r.returncode != 0:
            raise MaskError("compiling cpuidmask.c failed:\n" + r.stderr)
        lib = ctypes.CDLL(so)  # stays mapped after the directory is removed
    lib.cpuidmask_enable.argtypes = [ctypes.c_int]
    lib.cpuidmask_count.restype = ctypes.c_long
    lib.cpuidmask_query.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    return lib


def build_and_enable(isa):
    """Compile, load and enable the shim in the mode for `isa`. Returns the loaded library."""
    lib = build()
    rc = lib.cpuidmask_enable(ISA_MODES[isa])
    if rc != 0:
        raise MaskError(f"arch_prctl(ARCH_SET_CPUID) failed (rc {rc}); CPUID faulting unavailable")
    return lib


def cpuid(lib, leaf, sub=0):
    """(eax, ebx, ecx, edx) of CPUID leaf.sub as this process sees it (through the shim if enabled)."""
    q = (ctypes.c_uint32 * 4)()
    lib.cpuidmask_query(leaf, sub, q)
    return tuple(q)


def cpuid_features(lib):
    """FEATURE_NAMES (avx2, avx512 F+BW+DQ+VL, avx512_vnni, avx_vnni) as CPUID reports them now."""
    _, ebx, ecx, _ = cpuid(lib, 7, 0)
    eax1 = cpuid(lib, 7, 1)[0]
    avx2 = bool(ebx >> 5 & 1)
    avx512 = all(ebx >> b & 1 for b in (16, 17, 30, 31))  # F, DQ, BW, VL
    return (avx2, avx512, bool(ecx >> 11 & 1), bool(eax1 >> 4 & 1))


def trap_count(lib):
    """CPUID instructions the shim has trapped and answered so far in this process."""
    return int(lib.cpuidmask_count())


def enable_verified(isa):
    """build_and_enable, then check that CPUID leaf 7 / 7.1 shows exactly ISA_FEATURES[isa] and that
    the shim trapped the queries. Returns (lib, report dict); raises MaskError if the mask did not
    take effect."""
    check_usable(isa)
    lib = build_and_enable(isa)
    feats = cpuid_features(lib)
    _, ebx7, ecx7, edx7 = cpuid(lib, 7, 0)
    eax71 = cpuid(lib, 7, 1)[0]
    report = {
        "isa": isa, "mode": ISA_MODES[isa],
        "cpuid_features": dict(zip(FEATURE_NAMES, feats)),
        "cpuid_features_expected": dict(zip(FEATURE_NAMES, ISA_FEATURES[isa])),
        "cpuid_leaf7": {"ebx": f"{ebx7:#010x}", "ecx": f"{ecx7:#010x}", "edx": f"{edx7:#010x}",
                        "leaf7_1_eax": f"{eax71:#010x}"},
        "traps": trap_count(lib),
    }
    if feats != ISA_FEATURES[isa] or report["traps"] == 0:
        raise MaskError(f"CPUID after masking shows ({', '.join(FEATURE_NAMES)}) = {feats} with "
                        f"{report['traps']} trapped CPUID instructions, expected {ISA_FEATURES[isa]} "
                        "and at least one trap")
    return lib, report

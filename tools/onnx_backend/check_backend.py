"""Checks the ONNX backend node tests in tests/data/onnx-backend against their source and against
ONNX Runtime, and records what ONNX Runtime refuses.

1. Source: regenerates every copied test with the installed onnx package's own backend test
   generator (``onnx.backend.test.case.node.collect_testcases``, which wrote the files the onnx
   repository shipped) and checks that ``model.onnx`` and every ``input_K.pb`` / ``output_K.pb``
   are byte-identical to the copies.
2. ONNX Runtime: for each ISA in ``--isas`` (default ``native,avx2,avx512``), a child process
   (the CPUID mask of ``tools/golden/cpuidmask.c`` is installed before onnxruntime is imported;
   ``native`` installs none) runs every test with the CPU provider and default session options
   (1 intra-op thread), and reports per data set whether ONNX Runtime's output equals
   ``output_0.pb`` exactly, differs, or raises (its first line).
3. With ``--write``: a test that ONNX Runtime refuses on every ISA gets ``engine-errors.json``
   (``{"source", "errors": {"onnxruntime": first line}}``), which ``qconv conformance`` reads;
   a test it runs has none. A test that ONNX Runtime computes differently from the expected
   output, or refuses on some ISAs only, is an error (qconv has no way to record it).

Usage::

    /work/venv/bin/python tools/onnx_backend/check_backend.py [--write]

Needs onnx (1.23.2 was used), onnxruntime (1.32.0), numpy, gcc and Linux on x86-64 with the
cpuid_fault flag for masked ISAs. Never run by CI or by ``cargo test``.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import gen_onnx  # noqa: E402  (CPUID mask helpers; imports nothing heavy at module level)

DATA = os.path.join(HERE, "..", "..", "tests", "data", "onnx-backend")


def test_dirs(data):
    return sorted(d for d in glob.glob(os.path.join(data, "test_*")) if os.path.isdir(d))


def data_sets(test):
    return sorted(glob.glob(os.path.join(test, "test_data_set_*")),
                  key=lambda p: int(p.rsplit("_", 1)[1]))


def numbered(ds, prefix):
    return sorted(glob.glob(os.path.join(ds, prefix + "_*.pb")),
                  key=lambda p: int(p.rsplit("_", 1)[1][:-3]))


def verify_source(data):
    """Regenerates the copied tests with onnx's own generator; byte-compares every file."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnx.backend.test.case import node as node_cases

    cases = {c.name: c for c in node_cases.collect_testcases(None)}
    problems = []
    for test in test_dirs(data):
        name = os.path.basename(test)
        case = cases.get(name)
        if case is None:
            problems.append(f"{name}: onnx {onnx.__version__} has no such backend node test")
            continue
        files = {"model.onnx": case.model.SerializeToString()}
        for i, (inputs, outputs) in enumerate(case.data_sets):
            for kind, values in (("input", inputs), ("output", outputs)):
                for j, v in enumerate(values):
                    vi = (case.model.graph.input if kind == "input" else case.model.graph.output)[j]
                    t = v if isinstance(v, TensorProto) else numpy_helper.from_array(v, vi.name)
                    files[f"test_data_set_{i}/{kind}_{j}.pb"] = t.SerializeToString()
        have = {os.path.relpath(p, test) for p in glob.glob(os.path.join(test, "**", "*"), recursive=True)
                if os.path.isfile(p) and not p.endswith("engine-errors.json")}
        if have != set(files):
            problems.append(f"{name}: files {sorted(have)} differ from generated {sorted(files)}")
            continue
        for rel, b in files.items():
            with open(os.path.join(test, rel), "rb") as f:
                if f.read() != b:
                    problems.append(f"{name}/{rel}: differs from what onnx {onnx.__version__} generates")
    return onnx.__version__, problems


def child(isa, data, out):
    """Runs ONNX Runtime on every test; the mask for `isa` (unless native) is installed first."""
    flags = gen_onnx.cpu_flags()
    if isa == "native":
        isa = gen_onnx.host_isa(flags)
    else:
        if not gen_onnx.isa_available(isa, flags) or "cpuid_fault" not in flags:
            sys.exit(f"check_backend: cannot mask this CPU to {isa}")
        lib = gen_onnx.build_and_enable_mask(isa)
        feats = gen_onnx.cpuid_features(lib)
        if feats != gen_onnx.ISA_FEATURES[isa]:
            sys.exit(f"check_backend: CPUID after masking shows {feats}, expected {gen_onnx.ISA_FEATURES[isa]}")
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    gen_onnx.np = np
    ok, msg = gen_onnx.selfcheck(isa, 1)
    if not ok:
        sys.exit(f"check_backend: ONNX Runtime is not using the {isa} kernels: {msg}")
    results = {}
    for test in test_dirs(data):
        for ds in data_sets(test):
            key = f"{os.path.basename(test)}/{os.path.basename(ds)}"
            inputs = [numpy_helper.to_array(onnx.load_tensor(p)) for p in numbered(ds, "input")]
            expected = numpy_helper.to_array(onnx.load_tensor(numbered(ds, "output")[0]))
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 4
            try:
                s = ort.InferenceSession(os.path.join(test, "model.onnx"), so,
                                         providers=["CPUExecutionProvider"])
                feed = {i.name: a for i, a in zip(s.get_inputs(), inputs)}
                got = s.run(None, feed)[0]
                same = got.dtype == expected.dtype and np.array_equal(got, expected)
                results[key] = {"result": "equal" if same else "differs"}
            except Exception as e:  # noqa: BLE001  (ORT raises its own exception types)
                results[key] = {"result": "error", "error": gen_onnx.first_line(e)}
    with open(out, "w") as f:
        json.dump({"isa": isa, "onnxruntime": ort.__version__, "results": results}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--isas", default="native,avx2,avx512")
    ap.add_argument("--write", action="store_true", help="write / remove engine-errors.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.data, a.out)
        return

    onnx_version, problems = verify_source(a.data)
    for p in problems:
        print("SOURCE MISMATCH", p)
    print(f"source: {len(test_dirs(a.data))} tests checked against onnx {onnx_version}'s generator, "
          f"{len(problems)} mismatches")

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for isa in a.isas.split(","):
            out = os.path.join(tmp, f"{isa}.json")
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", isa,
                                "--data", a.data, "--out", out])
            if r.returncode != 0:
                sys.exit(f"check_backend: the {isa} run failed")
            with open(out) as f:
                runs.append(json.load(f))
    bad = bool(problems)
    errors = {}
    for key in sorted(runs[0]["results"]):
        row = [run["results"][key] for run in runs]
        cells = [f"{run['isa']}: {res['result']}" for run, res in zip(runs, row)]
        print(f"{key}: onnxruntime {runs[0]['onnxruntime']}: " + ", ".join(cells))
        kinds = {res["result"] for res in row}
        if "differs" in kinds or len(kinds) > 1:
            print(f"  cannot be recorded: ONNX Runtime differs from the expected output or "
                  f"behaves differently across ISAs")
            bad = True
        elif kinds == {"error"}:
            msgs = {res["error"] for res in row}
            print(f"  error: {' | '.join(sorted(msgs))}")
            errors.setdefault(key.split("/")[0], set()).update(msgs)
    if a.write and not bad:
        isas = ", ".join(run["isa"] for run in runs)
        for test in test_dirs(a.data):
            path = os.path.join(test, "engine-errors.json")
            msgs = errors.get(os.path.basename(test))
            if msgs:
                with open(path, "w") as f:
                    json.dump({"source": f"onnxruntime {runs[0]['onnxruntime']}, CPUExecutionProvider, "
                                         f"default session options, on {isas} "
                                         f"(tools/onnx_backend/check_backend.py)",
                               "errors": {"onnxruntime": sorted(msgs)[0]}}, f, indent=2)
                    f.write("\n")
                print(f"wrote {path}")
            elif os.path.exists(path):
                os.remove(path)
                print(f"removed {path}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

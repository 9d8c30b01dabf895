#!/usr/bin/env python3
"""Make the real-model fixtures of tests/data/models: a small quantized CNN, quantized by ONNX
Runtime's own ``onnxruntime.quantization.quantize_static`` in several formats, and every
convolution node's real input and output as ONNX Runtime computes them, on several ISAs.

Steps (``--out DIR``, default tests/data/models):

1. ``mnv2ish``: a MobileNetV2-like network with a ResNet basic block, a grouped dilated conv and
   a 1x5 conv (12 convolutions, random weights, seed 0), exported by ``torch.onnx.export``
   (TorchScript exporter, opset 17, input 1x3x32x32).
2. Quantized with ``quantize_static`` (MinMax calibration on 16 random images) into:

   =====================  ==========  ===========  ===========  =========================
   file                   format      activations  weights      per channel
   =====================  ==========  ===========  ===========  =========================
   qop-u8s8-pt.onnx       QOperator   QUInt8       QInt8        no
   qop-u8s8-pc.onnx       QOperator   QUInt8       QInt8        yes
   qop-s8s8-pc.onnx       QOperator   QInt8        QInt8        yes
   qdq-u8s8-pt.onnx       QDQ         QUInt8       QInt8        no
   qdq-u8s8-pc.onnx       QDQ         QUInt8       QInt8        yes
   qdq-s8s8-pt.onnx       QDQ         QInt8        QInt8        no   (quantize_static defaults)
   qdq-u8s8-pc-fbias.onnx QDQ         QUInt8       QInt8        yes, float biases (the bias
                                                                DequantizeLinear nodes replaced
                                                                by the float model's biases,
                                                                which ONNX Runtime quantizes
                                                                itself when fusing)
   =====================  ==========  ===========  ===========  =========================

3. For each ISA in ``--isas`` (default ``native,avx2,avx512``) a child process (the CPUID mask of
   ``tools/golden/cpuidmask.c`` must be installed before onnxruntime is imported; ``native``
   installs none and records this CPU's ISA class) runs every model on one random image (seed 1)
   with ONNX Runtime's default session options (1 intra-op thread) and saves the optimized
   graph ONNX Runtime actually executes (``optimized_model_filepath``). It then loads that graph
   with graph optimizations disabled, adds every convolution's input and output as graph
   outputs, runs it again, and checks that the model's final outputs are bit-identical to the
   first run. The optimized graph's QLinearConv / Conv nodes are matched to the model's
   convolution nodes by their weight initializer; NHWC tensors (ONNX Runtime's channels-last
   QLinearConv) are transposed back to NCHW, and tensors ONNX Runtime converted from int8 to
   uint8 (QDQS8ToU8Transformer) are converted back (value - 128) to the model's type.

   Capturing from the optimized graph matters: adding graph outputs to the original model
   would change what ONNX Runtime fuses (an int8 QuantizeLinear -> DequantizeLinear pair with
   a second consumer is no longer converted to uint8), so the captured values would not be the
   ones the model computes.

4. Writes ``DIR/<model>.onnx`` and ``DIR/captures/<model>/<isa>/<tensor>.npy`` (a capture equal
   to one already written for another ISA of the same model points to that file) and
   ``DIR/manifest.json``::

       {"generator", "onnxruntime", "onnx", "torch", "models": [{"name", "file", "format",
        "activations", "weights", "per_channel", "float_bias", "captures": [{"isa",
        "cpuid_mask", "nodes": [{"index", "name", "ort_op", "ort_types", "fused",
        "input", "output"}]}]}]}

   ``fused`` is false for nodes ONNX Runtime leaves as DequantizeLinear -> float Conv ->
   QuantizeLinear; ``ort_op`` / ``ort_types`` describe the node in the optimized graph.

Usage::

    /work/venv/bin/python tools/models/gen_models.py --out tests/data/models

Needs torch, onnx, onnxruntime, numpy, gcc, Linux on x86-64 with the cpuid_fault flag (for
masked ISAs). Uses ``tools/golden/gen_onnx.py`` for the CPUID mask. Never run by CI.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import gen_onnx  # noqa: E402  (CPUID mask helpers; imports nothing heavy at module level)

GENERATOR = "tools/models/gen_models.py"

VARIANTS = [
    # name, format, activations, per_channel, float_bias
    ("qop-u8s8-pt", "QOperator", "u8", False, False),
    ("qop-u8s8-pc", "QOperator", "u8", True, False),
    ("qop-s8s8-pc", "QOperator", "s8", True, False),
    ("qdq-u8s8-pt", "QDQ", "u8", False, False),
    ("qdq-u8s8-pc", "QDQ", "u8", True, False),
    ("qdq-s8s8-pt", "QDQ", "s8", False, False),
    ("qdq-u8s8-pc-fbias", "QDQ", "u8", True, True),
]

INPUT_SHAPE = (1, 3, 32, 32)


# ------------------------------------------------------------------------------------------
# 1-2. The float model and its quantized variants (parent process, no CPUID mask)
# ------------------------------------------------------------------------------------------


def build_float_model(path):
    import torch
    import torch.nn as nn

    torch.manual_seed(0)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, expand, stride):
            super().__init__()
            hidden = cin * expand
            self.pw = nn.Conv2d(cin, hidden, 1)
            self.dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden)
            self.pl = nn.Conv2d(hidden, cout, 1)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            y = torch.clamp(self.pw(x), 0, 6)
            y = torch.clamp(self.dw(y), 0, 6)
            y = self.pl(y)
            return x + y if self.residual else y

    class BasicBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c1 = nn.Conv2d(c, c, 3, 1, 1)
            self.c2 = nn.Conv2d(c, c, 3, 1, 1)

        def forward(self, x):
            return torch.relu(x + self.c2(torch.relu(self.c1(x))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, 2, 1)
            self.b1 = InvertedResidual(16, 16, 2, 1)
            self.b2 = InvertedResidual(16, 24, 3, 2)
            self.res = BasicBlock(24)
            self.g = nn.Conv2d(24, 24, 3, 1, 2, dilation=2, groups=4)
            self.r = nn.Conv2d(24, 24, (1, 5), 1, (0, 2))
            self.head = nn.Conv2d(24, 64, 1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = self.b2(self.b1(x))
            x = self.res(x)
            x = torch.relu(self.g(x))
            x = x + self.r(x)
            x = torch.relu(self.head(x))
            return self.fc(x.mean((2, 3)))

    net = Net().eval()
    x = torch.randn(*INPUT_SHAPE)
    torch.onnx.export(net, x, path, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamo=False)


def calibration_images(np, count=16, seed=2):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(INPUT_SHAPE).astype(np.float32) for _ in range(count)]


def quantize_variants(float_path, out_dir):
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = [{"input": x} for x in calibration_images(np)]
            self.i = 0

        def get_next(self):
            if self.i >= len(self.data):
                return None
            self.i += 1
            return self.data[self.i - 1]

    float_model = onnx.load(float_path)
    float_inits = {t.name: t for t in float_model.graph.initializer}
    for name, fmt, act, per_channel, float_bias in VARIANTS:
        path = os.path.join(out_dir, name + ".onnx")
        quantize_static(
            float_path, path, Reader(),
            quant_format=QuantFormat.QOperator if fmt == "QOperator" else QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8)
        if float_bias:
            replace_bias_dq_with_float(path, float_inits)
        print(f"gen_models: wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


def replace_bias_dq_with_float(path, float_inits):
    """Replaces each Conv's bias DequantizeLinear by the float model's bias initializer."""
    import onnx

    m = onnx.load(path)
    g = m.graph
    producers = {o: n for n in g.node for o in n.output}
    remove = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 3:
            continue
        dq = producers.get(n.input[2])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        float_bias = float_inits[n.input[2]]  # the DQ output keeps the float bias's name
        remove.append(dq)
        g.initializer.append(float_bias)
    for dq in remove:
        g.node.remove(dq)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(m)
    onnx.save(m, path)


# ------------------------------------------------------------------------------------------
# 3. Capture (child process per ISA; the mask is installed before onnxruntime is imported)
# ------------------------------------------------------------------------------------------


def sanitize(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "t"


def model_conv_nodes(model):
    """The model's convolution nodes as qconv lists them: (index, name, weight initializer,
    input tensor, output tensor, input dtype, output dtype) for QLinearConv, ConvInteger and
    DequantizeLinear -> Conv -> QuantizeLinear (with an optional Relu / Clip before Q)."""
    import onnx
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in g.initializer}
    np_type = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}
    out = []
    for n in g.node:
        if n.op_type == "QLinearConv":
            out.append((n.name, n.input[3], n.input[0], n.output[0],
                        np_type[inits[n.input[2]].data_type], np_type[inits[n.input[7]].data_type]))
        elif n.op_type == "Conv":
            dq = producers.get(n.input[0])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            nxt = consumers.get(n.output[0], [])
            if len(nxt) == 1 and nxt[0].op_type in ("Relu", "Clip"):
                nxt = consumers.get(nxt[0].output[0], [])
            if len(nxt) != 1 or nxt[0].op_type != "QuantizeLinear":
                continue
            q = nxt[0]
            wdq = producers[n.input[1]]
            out.append((n.name, wdq.input[0], dq.input[0], q.output[0],
                        np_type[inits[dq.input[2]].data_type], np_type[inits[q.input[2]].data_type]))
    return [(i,) + t for i, t in enumerate(out)]


def capture(models_dir, isa, mask_mode, out_json):
    import numpy as np
    import onnx
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    image = rng.standard_normal(INPUT_SHAPE).astype(np.float32)
    result = {"isa": isa, "cpuid_mask": mask_mode, "onnxruntime": ort.__version__, "models": {}}
    for name, *_ in VARIANTS:
        path = os.path.join(models_dir, name + ".onnx")
        model = onnx.load(path)
        nodes = model_conv_nodes(model)
        with tempfile.TemporaryDirectory() as tmp:
            opt_path = os.path.join(tmp, "optimized.onnx")
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 3
            so.optimized_model_filepath = opt_path
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            reference = sess.run(None, {"input": image})
            opt = onnx.load(opt_path)
        tensors, records = capture_optimized(np, onnx, ort, opt, image, reference, nodes, name)
        result["models"][name] = {"nodes": records, "tensors": tensors}
        fused = sum(r["fused"] for r in records)
        print(f"gen_models[{isa}]: {name}: {len(records)} conv nodes, {fused} fused", file=sys.stderr)
    with open(out_json, "w") as f:
        json.dump(result, f)


def capture_optimized(np, onnx, ort, opt, image, reference, nodes, model_name):
    """Runs ORT's optimized graph with every conv's input and output exposed; returns
    ({tensor name: (list, shape, dtype)}, node records)."""
    g = opt.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def zp_type(name):
        t = inits.get(name)
        return {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}.get(t.data_type) if t else None

    def weight_name(w):  # weight initializer, through a DequantizeLinear for unfused convs
        p = producers.get(w)
        if p is not None and p.op_type == "DequantizeLinear":
            return p.input[0]
        return w

    by_weight = {}
    for n in g.node:
        if n.op_type == "QLinearConv":
            by_weight[n.input[3].replace("_s8_2_u8", "")] = n
        elif n.op_type == "Conv":
            by_weight[weight_name(n.input[1]).replace("_s8_2_u8", "")] = n

    plan = []  # (node record, (opt tensor in, layout, dtype), (opt tensor out, layout, dtype))
    for index, name, weight, x_name, y_name, x_dtype, y_dtype in nodes:
        on = by_weight.get(weight)
        if on is None:
            sys.exit(f"gen_models: {model_name}: no node of the optimized graph uses weight {weight}")
        if on.op_type == "QLinearConv":
            nhwc = any(a.name == "channels_last" and a.i == 1 for a in on.attribute)
            x_in = (on.input[0], nhwc, zp_type(on.input[2]))
            y_out = (on.output[0], nhwc, zp_type(on.input[7]))
            ort_types = f"{zp_type(on.input[2])} {zp_type(on.input[5])} {zp_type(on.input[7])}"
            fused = True
        else:  # float Conv between DequantizeLinear and QuantizeLinear
            dq = producers[on.input[0]]
            nxt = consumers[on.output[0]]
            if len(nxt) == 1 and nxt[0].op_type in ("Relu", "Clip"):
                nxt = consumers[nxt[0].output[0]]
            q = nxt[0]
            if q.op_type != "QuantizeLinear":
                sys.exit(f"gen_models: {model_name}: unfused conv {on.name} not followed by Q")
            x_in = (dq.input[0], False, zp_type(dq.input[2]))
            y_out = (q.output[0], False, zp_type(q.input[2]))
            ort_types = f"{x_in[2]} float {y_out[2]}"
            fused = False
        rec = {"index": index, "name": name, "ort_op": (on.domain + "." if on.domain else "") + on.op_type,
               "ort_types": ort_types, "fused": fused}
        plan.append((rec, x_in, y_out, x_name, y_name, x_dtype, y_dtype))

    extra = []
    for _, x_in, y_out, *_ in plan:
        for t in (x_in[0], y_out[0]):
            if t not in extra and t not in [o.name for o in g.output]:
                extra.append(t)
    for t in extra:
        g.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(opt.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, {"input": image})))
    for ref, o in zip(reference, opt.graph.output[:len(reference)]):
        if not np.array_equal(ref, values[o.name]):
            sys.exit(f"gen_models: {model_name}: rerunning the optimized graph changed output {o.name}")

    tensors = {}

    def take(spec, model_tensor, model_dtype):
        t, nhwc, dtype = spec
        v = values[t]
        if nhwc:
            v = v.transpose(0, 3, 1, 2)
        v = v.astype(np.int64)
        if dtype == "uint8" and model_dtype == "int8":
            v = v - 128  # ORT converted this int8 tensor to uint8 (QDQS8ToU8Transformer)
        elif dtype != model_dtype:
            sys.exit(f"gen_models: {model_name}: tensor {t} is {dtype}, the model's is {model_dtype}")
        arr = v.astype(model_dtype)
        if model_tensor in tensors and not np.array_equal(tensors[model_tensor], arr):
            sys.exit(f"gen_models: {model_name}: tensor {model_tensor} captured twice, differently")
        tensors[model_tensor] = arr
        return model_tensor

    records = []
    for rec, x_in, y_out, x_name, y_name, x_dtype, y_dtype in plan:
        rec["input"] = take(x_in, x_name, x_dtype)
        rec["output"] = take(y_out, y_name, y_dtype)
        records.append(rec)
    return {k: (v.reshape(-1).tolist(), list(v.shape), str(v.dtype)) for k, v in tensors.items()}, records


def child_main(a):
    """Capture mode: install the mask for --isa (unless native), then capture."""
    flags = gen_onnx.cpu_flags()
    mask_mode = None
    isa = a.isa
    if isa == "native":
        isa = gen_onnx.host_isa(flags)
    else:
        if not gen_onnx.isa_available(isa, flags) or "cpuid_fault" not in flags:
            sys.exit(f"gen_models: cannot mask this CPU to {isa}")
        lib = gen_onnx.build_and_enable_mask(isa)
        feats = gen_onnx.cpuid_features(lib)
        if feats != gen_onnx.ISA_FEATURES[isa]:
            sys.exit(f"gen_models: CPUID after masking shows {feats}, expected {gen_onnx.ISA_FEATURES[isa]}")
        mask_mode = isa
    import numpy
    gen_onnx.np = numpy
    ok, msg = gen_onnx.selfcheck(isa, 1)
    print(f"gen_models: ISA self-check {isa}: {msg}", file=sys.stderr)
    if not ok:
        sys.exit("gen_models: ONNX Runtime is not using the expected kernels")
    capture(a.models, isa, mask_mode, a.capture_out)


# ------------------------------------------------------------------------------------------
# 4. Parent: build, capture per ISA, write fixtures
# ------------------------------------------------------------------------------------------


def write_npy(np, path, values, shape, dtype):
    np.save(path, np.array(values, dtype=dtype).reshape(shape), allow_pickle=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/models")
    ap.add_argument("--isas", default="native,avx2,avx512",
                    help="comma-separated: native (no mask), avx2, avx512, avx-vnni, avx512-vnni")
    ap.add_argument("--capture-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--isa", help=argparse.SUPPRESS)
    ap.add_argument("--models", help=argparse.SUPPRESS)
    ap.add_argument("--capture-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.capture_child:
        child_main(a)
        return

    import numpy as np
    import onnx
    import onnxruntime
    import torch

    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, "mnv2ish-float.onnx")
        build_float_model(float_path)
        quantize_variants(float_path, a.out)
        captures = []
        for isa in a.isas.split(","):
            out_json = os.path.join(tmp, f"capture-{isa}.json")
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--capture-child",
                                "--isa", isa, "--models", a.out, "--capture-out", out_json])
            if r.returncode != 0:
                sys.exit(f"gen_models: capture on {isa} failed")
            with open(out_json) as f:
                captures.append(json.load(f))

    manifest = {"generator": GENERATOR, "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__, "torch": torch.__version__, "models": []}
    for name, fmt, act, per_channel, float_bias in VARIANTS:
        entry = {"name": name, "file": name + ".onnx", "format": fmt,
                 "activations": "uint8" if act == "u8" else "int8", "weights": "int8",
                 "per_channel": per_channel, "float_bias": float_bias, "captures": []}
        written = {}  # (tensor, dtype, shape, values) -> file: equal captures share a file
        for cap in captures:
            isa = cap["isa"]
            rel_dir = f"captures/{name}/{isa}"
            m = cap["models"][name]
            files = {}
            for tname, (values, shape, dtype) in sorted(m["tensors"].items()):
                key = (tname, dtype, tuple(shape), tuple(values))
                if key in written:
                    files[tname] = written[key]
                    continue
                fname = sanitize(tname) + ".npy"
                rel = f"{rel_dir}/{fname}"
                if rel in written.values():
                    sys.exit(f"gen_models: two tensors sanitize to {fname}")
                os.makedirs(os.path.join(a.out, rel_dir), exist_ok=True)
                write_npy(np, os.path.join(a.out, rel), values, shape, dtype)
                written[key] = rel
                files[tname] = rel
            nodes = []
            for rec in m["nodes"]:
                rec = dict(rec)
                rec["input"] = files[rec["input"]]
                rec["output"] = files[rec["output"]]
                nodes.append(rec)
            entry["captures"].append({"isa": isa, "cpuid_mask": cap["cpuid_mask"], "nodes": nodes})
        manifest["models"].append(entry)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"gen_models: wrote {os.path.join(a.out, 'manifest.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()

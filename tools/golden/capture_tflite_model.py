#!/usr/bin/env python3
"""Build a small MobileNet-style int8 TFLite model and capture what the interpreter computes at
each of its convolutions, as golden cases (tests/data/golden/FORMAT.md).

The model (random Keras weights, full-integer post-training quantization from random
representative data) is written to ``--model``. Then every CONV_2D / DEPTHWISE_CONV_2D is
captured from a whole-model run on one fixed random int8 image, by two interpreters:

* ``tflite``: ``tf.lite.Interpreter`` as it comes (the XNNPACK delegate runs the graph). A
  delegated graph keeps its intermediate tensors to itself, so a copy of the model whose graph
  outputs also list every convolution's input and output tensor is run (the operators and
  their parameters are untouched; the delegate must then write those tensors out);
* ``tflite_reference``: ``BUILTIN_REF`` with ``experimental_preserve_all_tensors``.

Each capture becomes one case per convolution and interpreter: the layer's parameters, the
input tensor *that interpreter* fed the convolution, and its output (``expected[key]``).
``source`` records ``model`` (the file name), ``op_index`` (``MODEL.tflite#op_index`` in qconv),
``interpreter`` and the ``isa``. With ``--isa avx2`` the capture runs with AVX-512 and VNNI
hidden from CPUID (cpuidmask.c, as gen_onnx.py does it), to check that XNNPACK's integers do
not depend on the ISA.

Needs TensorFlow 2.21 (``pip install tensorflow-cpu`` in a virtual environment outside the
repository); never run by CI.

    python capture_tflite_model.py --model tiny_mobilenet_int8.tflite \\
        --out tiny_mobilenet_int8.capture.jsonl.gz
"""

import argparse
import ctypes
import gzip
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ISA_MODES = {"avx2": 1, "avx512": 3}


def mask_cpuid(isa):
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="cpuidmask-") as tmp:
        so = os.path.join(tmp, "cpuidmask.so")
        r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", so, os.path.join(here, "cpuidmask.c")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("compiling cpuidmask.c failed:\n" + r.stderr)
        lib = ctypes.CDLL(so)
    lib.cpuidmask_enable.argtypes = [ctypes.c_int]
    if lib.cpuidmask_enable(ISA_MODES[isa]) != 0:
        sys.exit("arch_prctl(ARCH_SET_CPUID) failed: CPUID faulting unavailable")
    return lib


def host_isa():
    words = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                words = set(line.split())
                break
    if "avx512f" in words and "avx512_vnni" in words:
        return "avx512-vnni"
    return "avx512" if "avx512f" in words else "avx2"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the .tflite file to write (or read with --reuse)")
    p.add_argument("--out", required=True)
    p.add_argument("--isa", choices=["avx2", "avx512"], default=None, help="hide ISA features first")
    p.add_argument("--reuse", action="store_true", help="capture an existing --model, do not build")
    p.add_argument("--seed", type=int, default=2024)
    a = p.parse_args()
    lib = mask_cpuid(a.isa) if a.isa else None
    isa = a.isa or host_isa()

    import numpy as np
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    rng = np.random.default_rng(a.seed)
    tf.keras.utils.set_random_seed(a.seed)
    if not a.reuse:
        L = tf.keras.layers
        x = tf.keras.Input(shape=(64, 64, 3), batch_size=1)
        y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
        y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
        y = L.Conv2D(24, 1)(y)
        y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(y)
        y = L.Conv2D(32, 1, activation="relu6")(y)
        r = L.DepthwiseConv2D(3, padding="same", depth_multiplier=1, activation="relu6")(y)
        r = L.Conv2D(32, 1)(r)
        y = L.Add()([y, r])
        y = L.DepthwiseConv2D(5, strides=2, padding="same", depth_multiplier=2, activation="relu")(y)
        y = L.Conv2D(48, 3, padding="valid", activation="relu")(y)
        y = L.Conv2D(40, 3, dilation_rate=2, padding="same")(y)
        y = L.Conv2D(16, (3, 1), strides=2, padding="same", activation="relu6")(y)
        y = L.GlobalAveragePooling2D()(y)
        y = L.Dense(10)(y)
        model = tf.keras.Model(x, y)
        for layer in model.layers:  # trained models have non-zero biases
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32) * 0.2)

        def representative():
            for _ in range(16):
                yield [rng.standard_normal((1, 64, 64, 3)).astype(np.float32)]

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with open(a.model, "wb") as f:
            f.write(conv.convert())
    content = open(a.model, "rb").read()

    # The convolutions and their tensors.
    ref = tf.lite.Interpreter(
        model_content=content,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    ref.allocate_tensors()
    ops = [o for o in ref._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    details = {d["index"]: d for d in ref.get_tensor_details()}
    inp = ref.get_input_details()[0]
    image = rng.integers(-128, 128, size=inp["shape"], dtype=np.int8)

    ref.set_tensor(inp["index"], image)
    ref.invoke()
    captured = {"tflite_reference": {}}
    for o in ops:
        for t in (o["inputs"][0], o["outputs"][0]):
            captured["tflite_reference"][t] = ref.get_tensor(t).copy()

    # The same model with every convolution's input and output among the graph outputs.
    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    wanted = []
    for o in ops:
        for t in (o["inputs"][0], o["outputs"][0]):
            if t not in wanted and t != inp["index"]:
                wanted.append(t)
    sg = m.subgraphs[0]
    sg.outputs = list(sg.outputs) + [t for t in wanted if t not in list(sg.outputs)]
    exposed = bytes(flatbuffer_utils.convert_object_to_bytearray(m))
    it = tf.lite.Interpreter(model_content=exposed, num_threads=1)
    it.allocate_tensors()
    delegated = [o["op_name"] for o in it._get_ops_details()]
    it.set_tensor(it.get_input_details()[0]["index"], image)
    it.invoke()
    captured["tflite"] = {inp["index"]: image}
    for d in it.get_output_details():
        captured["tflite"][d["index"]] = it.get_tensor(d["index"]).copy()

    original = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    acts = {0: "linear", 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}

    def same(size, k, s, d):
        eff = (k - 1) * d + 1
        out = (size + s - 1) // s
        total = max((out - 1) * s + eff - size, 0)
        return total // 2, total - total // 2

    name = os.path.basename(a.model)
    with gzip.open(a.out, "wt") as f:
        for o in ops:
            opts = original.subgraphs[0].operators[o["index"]].builtinOptions
            stride = [int(opts.strideH), int(opts.strideW)]
            dilation = [int(opts.dilationHFactor), int(opts.dilationWFactor)]
            xi, wi, bi, yi = o["inputs"][0], o["inputs"][1], o["inputs"][2], o["outputs"][0]
            xd, wd, yd = details[xi], details[wi], details[yi]
            w = ref.get_tensor(wi)
            b = ref.get_tensor(bi) if bi >= 0 else None
            depthwise = o["op_name"] == "DEPTHWISE_CONV_2D"
            weight = np.transpose(w, (3, 0, 1, 2)) if depthwise else np.transpose(w, (0, 3, 1, 2))
            c = xd["shape"][3]
            groups = c if depthwise else c // w.shape[3]
            kh, kw = int(weight.shape[2]), int(weight.shape[3])
            if opts.padding == 0:  # SAME
                t, bt = same(int(xd["shape"][1]), kh, stride[0], dilation[0])
                l, rt = same(int(xd["shape"][2]), kw, stride[1], dilation[1])
            else:
                t = bt = l = rt = 0
            for key in ("tflite", "tflite_reference"):
                x, y = captured[key][xi], captured[key][yi]
                q = lambda d: d["quantization_parameters"]
                case = {
                    "id": f"{os.path.splitext(name)[0]}-op{o['index']}-{key}",
                    "source": {"framework": "tflite", "version": tf.__version__, "isa": isa,
                               "op": o["op_name"], "model": name, "op_index": int(o["index"]),
                               "interpreter": key, "graph": delegated if key == "tflite" else "BUILTIN_REF",
                               "padding_mode": "same" if opts.padding == 0 else "valid"},
                    "conv": {"kernel": [kh, kw], "stride": stride, "padding": [t, l, bt, rt],
                             "dilation": dilation, "groups": int(groups)},
                    "input": {"dtype": "int8", "shape": [1, int(c), int(xd["shape"][1]), int(xd["shape"][2])],
                              "scale": float(q(xd)["scales"][0]), "zero_point": int(q(xd)["zero_points"][0]),
                              "data": np.transpose(x, (0, 3, 1, 2)).reshape(-1).astype(int).tolist()},
                    "weight": {"dtype": "int8", "shape": list(map(int, weight.shape)), "axis": 0,
                               "scale": [float(s) for s in q(wd)["scales"]],
                               "zero_point": [int(z) for z in q(wd)["zero_points"]],
                               "data": weight.reshape(-1).astype(int).tolist()},
                    "bias": None if b is None else {"dtype": "int32", "data": b.astype(int).tolist()},
                    "relu": False,
                    "output": {"dtype": "int8", "scale": float(q(yd)["scales"][0]),
                               "zero_point": int(q(yd)["zero_points"][0]),
                               "shape": [1, int(yd["shape"][3]), int(yd["shape"][1]), int(yd["shape"][2])],
                               "activation": acts[int(opts.fusedActivationFunction)]},
                    "expected": {key: np.transpose(y, (0, 3, 1, 2)).reshape(-1).astype(int).tolist()},
                }
                f.write(json.dumps(case) + "\n")
    print(f"{len(ops)} convolutions, graph under the default interpreter: {delegated}", file=sys.stderr)
    if lib is not None:
        print("CPUID masked for", isa, file=sys.stderr)


if __name__ == "__main__":
    main()

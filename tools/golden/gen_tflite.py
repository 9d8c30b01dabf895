#!/usr/bin/env python3
"""Generate TFLite golden cases in qconv's golden format (tests/data/golden/FORMAT.md).

Every case is one random Keras ``Conv2D`` or ``DepthwiseConv2D`` layer (random geometry, SAME or
VALID padding, no / ReLU / ReLU6 activation, random float weights and bias), converted by
``tf.lite.TFLiteConverter`` with full-integer post-training quantization (int8 input and output,
symmetric per-channel int8 weights, int32 bias) from a random representative data set, then run
on random int8 inputs by two interpreters:

* ``tflite``: ``tf.lite.Interpreter`` with its defaults (the XNNPACK delegate takes the conv);
* ``tflite_reference``: ``experimental_op_resolver_type=BUILTIN_REF`` (TFLite's reference
  kernels, no delegate);

and optionally (``--builtin``) ``tflite_builtin``: ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (the
interpreter's own optimized kernels, what it runs for a node the delegate does not take).

Tensors are transposed from NHWC / OHWI (depthwise: 1HWO) to NCHW / OIHW. An interpreter that
raises records the first line of its error under ``errors[key]``. ``source.isa`` is the ISA of
this machine as qconv names it (``avx512-vnni``, ``avx512``, ``avx2``), or ``--isa``.

Needs TensorFlow (``pip install tensorflow-cpu`` into a virtual environment outside the
repository). Never run by CI: ``cargo test`` reads the files this writes.

    python gen_tflite.py --family mixed --count 100 --seed 7001 --out tflite-mixed-7001.jsonl.gz
"""

import argparse
import gzip
import json
import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def host_isa():
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line
                break
    words = set(flags.split())
    if "avx512f" in words and "avx512_vnni" in words:
        return "avx512-vnni"
    if "avx512f" in words:
        return "avx512"
    return "avx2"


def same_padding(size, k, stride, dilation):
    eff = (k - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def random_spec(rng, family):
    depthwise = family == "depthwise" or (family == "mixed" and rng.random() < 0.3)
    k = rng.choice([1, 2, 3, 3, 3, 5]) if family != "realistic" else rng.choice([1, 3, 3])
    kh, kw = (k, k) if rng.random() < 0.8 else (rng.randint(1, 5), rng.randint(1, 5))
    stride = rng.choice([1, 1, 2])
    dilation = 1 if stride > 1 or rng.random() < 0.8 else 2
    spec = {
        "depthwise": depthwise,
        "c": rng.randint(1, 16),
        "h": rng.randint(max(kh, 3) * dilation, 14),
        "w": rng.randint(max(kw, 3) * dilation, 14),
        "oc": rng.randint(1, 16),
        "multiplier": rng.choice([1, 1, 2]),
        "kernel": (kh, kw),
        "stride": stride,
        "dilation": dilation,
        "padding": rng.choice(["same", "valid"]),
        "activation": rng.choice(["linear", "linear", "relu", "relu6"]),
        "weight_std": rng.choice([0.05, 0.2, 1.0]) if family != "realistic" else 0.1,
        "input_std": rng.choice([0.5, 1.0, 3.0]) if family != "realistic" else 1.0,
        "input_mean": rng.choice([0.0, 0.0, 1.0]) if family != "realistic" else 0.0,
    }
    if family == "realistic":
        spec["c"] = rng.choice([8, 16, 24, 32])
        spec["oc"] = rng.choice([8, 16, 32])
        spec["h"] = spec["w"] = rng.choice([8, 12, 16])
    return spec


def build(spec, rng_np):
    c, h, w = spec["c"], spec["h"], spec["w"]
    x = tf.keras.Input(shape=(h, w, c), batch_size=1)
    act = None if spec["activation"] == "linear" else spec["activation"]
    common = dict(
        strides=spec["stride"],
        padding=spec["padding"],
        dilation_rate=spec["dilation"],
        activation=act,
    )
    if spec["depthwise"]:
        layer = tf.keras.layers.DepthwiseConv2D(
            spec["kernel"], depth_multiplier=spec["multiplier"], **common
        )
    else:
        layer = tf.keras.layers.Conv2D(spec["oc"], spec["kernel"], **common)
    y = layer(x)
    model = tf.keras.Model(x, y)
    ws = layer.get_weights()
    ws[0] = (rng_np.standard_normal(ws[0].shape) * spec["weight_std"]).astype(np.float32)
    ws[1] = (rng_np.standard_normal(ws[1].shape) * spec.get("bias_std", 0.5)).astype(np.float32)
    layer.set_weights(ws)

    def representative():
        for _ in range(8):
            yield [
                (
                    rng_np.standard_normal((1, h, w, c)) * spec["input_std"] + spec["input_mean"]
                ).astype(np.float32)
            ]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if spec.get("per_tensor"):
        conv._experimental_disable_per_channel = True
    return conv.convert()


def run(model, x, resolver):
    kwargs = {}
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver
    try:
        it = tf.lite.Interpreter(model_content=model, num_threads=1, **kwargs)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]), None
    except Exception as e:  # the engine refused: record its message
        return None, (str(e).strip().splitlines() or [""])[0]


def conv_tensors(model):
    it = tf.lite.Interpreter(
        model_content=model,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    it.allocate_tensors()
    ops = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    if len(ops) != 1:
        raise RuntimeError(f"expected one conv op, got {[o['op_name'] for o in it._get_ops_details()]}")
    op = ops[0]
    details = {d["index"]: d for d in it.get_tensor_details()}
    inp, flt, bias = (details[i] for i in op["inputs"][:3])
    out = details[op["outputs"][0]]
    return op["op_name"], inp, flt, bias, out, it.get_tensor(flt["index"]), it.get_tensor(bias["index"])


def delegated(model):
    it = tf.lite.Interpreter(model_content=model)
    try:
        it.allocate_tensors()
    except Exception:
        return None
    return "DELEGATE" in [o["op_name"] for o in it._get_ops_details()]


def f32(v):
    return float(np.float32(v))


def make_case(family, index, seed, spec, model, rng_np, isa, builtin):
    op, inp, flt, bias, out, wdata, bdata = conv_tensors(model)
    iq, fq, oq = inp["quantization_parameters"], flt["quantization_parameters"], out["quantization_parameters"]
    c, h, w = spec["c"], spec["h"], spec["w"]
    x = rng_np.integers(-128, 128, size=(1, h, w, c), dtype=np.int8)
    results, errors = {}, {}
    keys = [("tflite", None), ("tflite_reference", tf.lite.experimental.OpResolverType.BUILTIN_REF)]
    if builtin:
        keys.append(
            ("tflite_builtin", tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        )
    for key, resolver in keys:
        y, err = run(model, x, resolver)
        if err is None:
            results[key] = np.transpose(y, (0, 3, 1, 2)).reshape(-1).astype(int).tolist()
        else:
            errors[key] = err
    kh, kw = spec["kernel"]
    if op == "CONV_2D":
        weight = np.transpose(wdata, (0, 3, 1, 2))  # OHWI -> OIHW
        groups = c // wdata.shape[3]
    else:
        weight = np.transpose(wdata, (3, 0, 1, 2))  # 1HWO -> O1HW
        groups = c
    if spec["padding"] == "same":
        t, b = same_padding(h, kh, spec["stride"], spec["dilation"])
        l, r = same_padding(w, kw, spec["stride"], spec["dilation"])
    else:
        t = b = l = r = 0
    oshape = out["shape"].tolist()
    act = spec["activation"]
    oscale, ozp = f32(oq["scales"][0]), int(oq["zero_points"][0])

    def tfl_quantize(v):  # TFLite's CalculateActivationRangeQuantized (round half away)
        q = np.float32(v) / np.float32(oscale)
        return ozp + int(np.sign(q) * np.floor(np.abs(q) + np.float32(0.5)))

    lo, hi = -128, 127
    if act in ("relu", "relu6"):
        lo = max(lo, tfl_quantize(0.0))
    if act == "relu6":
        hi = min(hi, tfl_quantize(6.0))
    case = {
        "id": f"tflite-{family}-{seed}-{index:04d}",
        "source": {"framework": "tflite", "version": tf.__version__, "isa": isa, "op": op,
                   "generator": "tools/golden/gen_tflite.py", "seed": seed},
        "conv": {"kernel": [kh, kw], "stride": [spec["stride"]] * 2, "padding": [t, l, b, r],
                 "dilation": [spec["dilation"]] * 2, "groups": groups},
        "input": {"dtype": "int8", "shape": [1, c, h, w], "scale": f32(iq["scales"][0]),
                  "zero_point": int(iq["zero_points"][0]),
                  "data": np.transpose(x, (0, 3, 1, 2)).reshape(-1).astype(int).tolist()},
        "weight": {"dtype": "int8", "shape": list(weight.shape),
                   "axis": 0 if len(fq["scales"]) > 1 else None,
                   "scale": [f32(s) for s in fq["scales"]],
                   "zero_point": [int(z) for z in fq["zero_points"]],
                   "data": weight.reshape(-1).astype(int).tolist()},
        "bias": {"dtype": "int32", "data": bdata.astype(int).tolist()},
        "relu": False,
        "output": {"dtype": "int8", "scale": oscale, "zero_point": ozp,
                   "shape": [oshape[0], oshape[3], oshape[1], oshape[2]], "clamp": [lo, hi],
                   "activation": act},
        "expected": results,
    }
    case["source"]["padding_mode"] = spec["padding"]
    case["source"]["delegated"] = delegated(model)
    if errors:
        case["errors"] = errors
    return case


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--family",
        choices=["mixed", "depthwise", "realistic", "tiny-scale", "same-underflow", "per-tensor", "degenerate"],
        default="mixed",
    )
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seed", type=int, default=7001)
    p.add_argument("--out", required=True)
    p.add_argument("--isa", default=None, help="source.isa to record (default: this CPU's)")
    p.add_argument("--builtin", action="store_true", help="also record tflite_builtin")
    a = p.parse_args()
    rng = random.Random(a.seed)
    rng_np = np.random.default_rng(a.seed)
    tf.keras.utils.set_random_seed(a.seed)
    isa = a.isa or host_isa()
    with gzip.open(a.out, "wt") as f:
        for i in range(a.count):
            base = a.family if a.family in ("mixed", "depthwise", "realistic") else "mixed"
            spec = random_spec(rng, base)
            if a.family == "tiny-scale":
                spec["weight_std"] = 1e-4  # small products
            if a.family == "degenerate":
                # Near-zero weights and no bias: a near-constant output whose tiny output scale
                # makes XNNPACK's requantization scale exceed 256.
                spec["weight_std"] = 1e-7
                spec["bias_std"] = 0.0
            if a.family == "same-underflow":
                # SAME padding, stride 2, a kernel dimension of 1 over an even input dimension:
                # TensorFlow's padding total is -1 there.
                spec.update(stride=2, dilation=1, padding="same")
                k = rng.choice([2, 3, 5])
                if rng.random() < 0.5:
                    spec["kernel"] = (k, 1)
                    spec["w"] = 2 * rng.randint(1, 6)
                else:
                    spec["kernel"] = (1, k)
                    spec["h"] = 2 * rng.randint(1, 6)
            if a.family == "per-tensor":
                spec["per_tensor"] = True
            model = build(spec, rng_np)
            case = make_case(a.family, i, a.seed, spec, model, rng_np, isa, a.builtin)
            f.write(json.dumps(case) + "\n")
            print(case["id"], case["source"]["op"], sorted(case["expected"]), file=sys.stderr)


if __name__ == "__main__":
    main()

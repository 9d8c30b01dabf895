# Writes the r18_3x3_64_56 suite layer (crates/qconv/src/bench.rs SuiteLayer::build) as a TOML
# layer file with .npy tensors.
import struct
name = "r18_3x3_64_56"
C, S, OC, K = 64, 56, 64, 3
M = (1 << 64) - 1
state = 0x5eed ^ len(name)
def nxt():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) & M
    return state >> 33
inp = bytes(nxt() % 256 for _ in range(C * S * S))
w = [nxt() % 256 - 128 for _ in range(OC * C * K * K)]
def npy(path, descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
npy("input.npy", "|u1", [1, C, S, S], inp)
npy("weight.npy", "|i1", [OC, C, K, K], struct.pack("%db" % len(w), *w))
f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
scales = [f32(f32(0.002) + f32(f32(0.0001) * f32(oc % 7))) for oc in range(OC)]
bias = [(oc % 5) * 0.25 - 0.5 for oc in range(OC)]
out_scale = 0.02 * 0.002 * (C * K * K) * 3.0
with open("r18_3x3_64_56.toml", "w") as f:
    f.write(f'''name = "{name}"
description = "the r18_3x3_64_56 layer of qconv bench's suite, same data"

[conv]
kernel = [3, 3]
padding = [1, 1]

[input]
dtype = "uint8"
shape = [1, {C}, {S}, {S}]
scale = 0.02
zero_point = 128
file = "input.npy"

[weight]
dtype = "int8"
shape = [{OC}, {C}, {K}, {K}]
scale = [{", ".join(repr(s) for s in scales)}]
zero_point = 0
file = "weight.npy"

[bias]
dtype = "float32"
data = [{", ".join(repr(b) for b in bias)}]

[output]
dtype = "uint8"
scale = {out_scale!r}
zero_point = 128
''')

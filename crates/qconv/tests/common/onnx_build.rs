//! A minimal protobuf writer for building (valid and hostile) ONNX models in tests.

/// Protobuf bytes under construction.
#[derive(Clone, Default)]
pub struct Pb(pub Vec<u8>);

impl Pb {
    pub fn varint(mut self, mut v: u64) -> Self {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return self;
            }
            self.0.push(b | 0x80);
        }
    }
    pub fn key(self, field: u64, wire: u64) -> Self {
        self.varint(field << 3 | wire)
    }
    pub fn int(self, field: u64, v: i64) -> Self {
        self.key(field, 0).varint(v as u64)
    }
    pub fn bytes(self, field: u64, b: &[u8]) -> Self {
        let mut s = self.key(field, 2).varint(b.len() as u64);
        s.0.extend_from_slice(b);
        s
    }
    pub fn str(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u64, m: &Pb) -> Self {
        self.bytes(field, &m.0)
    }
    pub fn float(self, field: u64, v: f32) -> Self {
        let mut s = self.key(field, 5);
        s.0.extend_from_slice(&v.to_le_bytes());
        s
    }
}

pub const FLOAT: i64 = 1;
pub const UINT8: i64 = 2;
pub const INT8: i64 = 3;
pub const INT32: i64 = 6;

/// A TensorProto with raw data.
pub fn tensor(name: &str, dtype: i64, dims: &[i64], raw: &[u8]) -> Pb {
    let mut t = Pb::default();
    for &d in dims {
        t = t.int(1, d);
    }
    t.int(2, dtype).str(8, name).bytes(9, raw)
}

pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> Pb {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, FLOAT, dims, &raw)
}

pub fn i8_tensor(name: &str, dtype: i64, dims: &[i64], values: &[i32]) -> Pb {
    let raw: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    tensor(name, dtype, dims, &raw)
}

pub fn i32_tensor(name: &str, dims: &[i64], values: &[i32]) -> Pb {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, INT32, dims, &raw)
}

pub fn attr_ints(name: &str, v: &[i64]) -> Pb {
    let mut a = Pb::default().str(1, name).int(20, 7);
    for &x in v {
        a = a.int(8, x);
    }
    a
}

pub fn attr_int(name: &str, v: i64) -> Pb {
    Pb::default().str(1, name).int(20, 2).int(3, v)
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Pb]) -> Pb {
    let mut n = Pb::default();
    for i in inputs {
        n = n.str(1, i);
    }
    for o in outputs {
        n = n.str(2, o);
    }
    n = n.str(3, name).str(4, op);
    for a in attrs {
        n = n.msg(5, a);
    }
    n
}

pub fn value_info(name: &str, elem: i64, dims: &[i64]) -> Pb {
    let mut shape = Pb::default();
    for &d in dims {
        shape = shape.msg(1, &Pb::default().int(1, d));
    }
    let tt = Pb::default().int(1, elem).msg(2, &shape);
    Pb::default()
        .str(1, name)
        .msg(2, &Pb::default().msg(1, &tt))
}

/// The pieces of a one-QLinearConv model, to be altered by tests.
#[derive(Clone)]
pub struct Parts {
    pub nodes: Vec<Pb>,
    pub inits: Vec<Pb>,
    pub inputs: Vec<Pb>,
    pub outputs: Vec<Pb>,
}

impl Parts {
    pub fn model(&self) -> Vec<u8> {
        let mut g = Pb::default().str(2, "g");
        for n in &self.nodes {
            g = g.msg(1, n);
        }
        for t in &self.inits {
            g = g.msg(5, t);
        }
        for i in &self.inputs {
            g = g.msg(11, i);
        }
        for o in &self.outputs {
            g = g.msg(12, o);
        }
        let opset = Pb::default().str(1, "").int(2, 13);
        Pb::default()
            .int(1, 8)
            .str(2, "qconv-test")
            .msg(8, &opset)
            .msg(7, &g)
            .0
    }
}

/// A valid model: x (uint8 [1,2,4,4]) -> QLinearConv (int8 weight [3,2,3,3], pads 1, int32
/// bias) -> y, plus a Relu node.
pub fn qlinearconv_parts() -> Parts {
    let w: Vec<i32> = (0..54).map(|i| (i * 37 % 255) - 127).collect();
    Parts {
        nodes: vec![
            node(
                "QLinearConv",
                "conv",
                &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                &["y"],
                &[
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("strides", &[1, 1]),
                    attr_int("group", 1),
                ],
            ),
            node("Relu", "relu", &["y"], &["z"], &[]),
        ],
        inits: vec![
            f32_tensor("xs", &[], &[0.02]),
            i8_tensor("xz", UINT8, &[], &[128]),
            i8_tensor("w", INT8, &[3, 2, 3, 3], &w),
            f32_tensor("ws", &[3], &[0.001, 0.002, 0.003]),
            i8_tensor("wz", INT8, &[3], &[0, 0, 0]),
            f32_tensor("ys", &[], &[0.05]),
            i8_tensor("yz", UINT8, &[], &[10]),
            i32_tensor("b", &[3], &[100, -200, 300]),
        ],
        inputs: vec![value_info("x", UINT8, &[1, 2, 4, 4])],
        outputs: vec![value_info("z", UINT8, &[1, 3, 4, 4])],
    }
}

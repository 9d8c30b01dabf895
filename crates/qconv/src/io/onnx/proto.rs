//! A reader for the protocol buffer wire format, for the part of `onnx.proto` qconv needs:
//! `ModelProto`, `GraphProto`, `NodeProto`, `AttributeProto`, `TensorProto`, `ValueInfoProto`
//! (with the tensor part of `TypeProto`) and `OperatorSetIdProto`.
//!
//! Written by hand from the wire-format specification, so that building qconv needs neither
//! `protoc` nor generated code. Every length is checked against the bytes that remain before
//! anything is sliced or allocated, nesting is limited ([`MAX_DEPTH`]), and any malformed input
//! is an [`Error::Parse`] naming the file, the field path and the byte offset. Fields qconv does
//! not know are skipped, as protobuf readers do.

use crate::error::{Error, Result};

/// Deepest message nesting accepted (a graph inside an attribute inside a node inside a graph
/// counts three levels). Real models nest a few levels; protobuf's own default limit is 100.
pub const MAX_DEPTH: usize = 64;

/// Largest model file accepted: protobuf messages are limited to 2 GiB (larger ONNX models keep
/// their weights in external files, which qconv does not read).
pub const MAX_MODEL_BYTES: u64 = (1 << 31) - 1;

/// `TensorProto.DataType` values qconv names.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    /// The ONNX name of a data type (`uint8`, `float`, ...).
    pub fn name(t: i32) -> String {
        match t {
            0 => "undefined".into(),
            FLOAT => "float".into(),
            UINT8 => "uint8".into(),
            INT8 => "int8".into(),
            UINT16 => "uint16".into(),
            INT16 => "int16".into(),
            INT32 => "int32".into(),
            INT64 => "int64".into(),
            STRING => "string".into(),
            BOOL => "bool".into(),
            FLOAT16 => "float16".into(),
            DOUBLE => "double".into(),
            UINT32 => "uint32".into(),
            UINT64 => "uint64".into(),
            14 => "complex64".into(),
            15 => "complex128".into(),
            BFLOAT16 => "bfloat16".into(),
            17..=20 | 23 => "float8".into(),
            21 => "uint4".into(),
            22 => "int4".into(),
            other => format!("data type {other}"),
        }
    }
}

/// `ModelProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelProto {
    pub ir_version: Option<i64>,
    /// `(domain, version)` of every `opset_import`.
    pub opset_import: Vec<(String, i64)>,
    pub producer_name: String,
    pub producer_version: String,
    pub graph: Option<GraphProto>,
}

/// `GraphProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphProto {
    pub name: String,
    pub node: Vec<NodeProto>,
    pub initializer: Vec<TensorProto>,
    /// Names of sparse initializers (their contents are not read).
    pub sparse_initializer_names: Vec<String>,
    pub input: Vec<ValueInfoProto>,
    pub output: Vec<ValueInfoProto>,
    pub value_info: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeProto {
    pub input: Vec<String>,
    pub output: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub attribute: Vec<AttributeProto>,
}

impl NodeProto {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }
}

/// `AttributeProto.AttributeType` values.
pub mod attr_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const GRAPH: i32 = 5;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
    pub const STRINGS: i32 = 8;
    pub const TENSORS: i32 = 9;
    pub const GRAPHS: i32 = 10;
}

/// `AttributeProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttributeProto {
    pub name: String,
    /// The declared `type` (0 when absent, as in models from IR version 1).
    pub r#type: i32,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub s: Option<Vec<u8>>,
    pub t: Option<TensorProto>,
    pub g: Option<GraphProto>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    pub strings: Vec<Vec<u8>>,
    pub tensors: Vec<TensorProto>,
    pub graphs: Vec<GraphProto>,
    /// Set in function bodies: the attribute refers to an attribute of the calling node.
    pub ref_attr_name: Option<String>,
}

/// `TensorProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorProto {
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub name: String,
    pub raw_data: Option<Vec<u8>>,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i32>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub uint64_data: Vec<u64>,
    /// Number of `string_data` entries (their contents are not kept).
    pub string_data_len: usize,
    /// `data_location`: 0 default, 1 external.
    pub data_location: i32,
    /// `external_data` key/value pairs.
    pub external_data: Vec<(String, String)>,
    /// Whether the tensor declares a `segment` (a chunk of a larger tensor).
    pub has_segment: bool,
}

/// One dimension of a `TensorShapeProto`.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Value(i64),
    Param(String),
    Unknown,
}

/// `ValueInfoProto`, with the tensor part of its `TypeProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueInfoProto {
    pub name: String,
    /// `elem_type` when the type is a tensor type.
    pub elem_type: Option<i32>,
    /// The shape when the type is a tensor type with a shape.
    pub shape: Option<Vec<Dim>>,
}

/// Parses a `ModelProto` from `bytes`; `path` names the file in errors.
pub fn parse_model(path: &str, bytes: &[u8]) -> Result<ModelProto> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Error::parse(
            path,
            "",
            format!(
                "{} bytes: larger than the 2 GiB protobuf limit (weights in external files are \
                 not read)",
                bytes.len()
            ),
        ));
    }
    let ctx = Ctx { path };
    let mut model = ModelProto::default();
    let mut r = Reader::new(bytes, 0);
    while let Some((field, wire)) = r.key(&ctx, "model")? {
        match field {
            1 => model.ir_version = Some(r.int64(&ctx, wire, "model.ir_version")?),
            2 => model.producer_name = r.string(&ctx, wire, "model.producer_name")?,
            3 => model.producer_version = r.string(&ctx, wire, "model.producer_version")?,
            7 => {
                let (sub, at) = r.message(&ctx, wire, "model.graph")?;
                model.graph = Some(parse_graph(&ctx, sub, at, "graph", 1)?);
            }
            8 => {
                let where_ = format!("model.opset_import[{}]", model.opset_import.len());
                let (sub, at) = r.message(&ctx, wire, &where_)?;
                model
                    .opset_import
                    .push(parse_opset(&ctx, sub, at, &where_)?);
            }
            _ => r.skip(&ctx, wire, "model")?,
        }
    }
    Ok(model)
}

/// Parses a serialized `TensorProto` on its own (the `input_N.pb` / `output_N.pb` files of the
/// ONNX backend tests); `path` names the file in errors.
pub fn parse_tensor_proto(path: &str, bytes: &[u8]) -> Result<TensorProto> {
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Error::parse(
            path,
            "",
            format!(
                "{} bytes: larger than the 2 GiB protobuf limit",
                bytes.len()
            ),
        ));
    }
    let ctx = Ctx { path };
    parse_tensor(&ctx, bytes, 0, "tensor", 1)
}

/// Where an error is reported.
struct Ctx<'a> {
    path: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, offset: usize, message: impl Into<String>) -> Error {
        Error::parse(
            self.path,
            format!("field `{field}` (byte {offset})"),
            message,
        )
    }
}

/// The four wire types still in use (groups, wire types 3 and 4, are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Varint => "varint",
            Wire::Fixed64 => "64-bit",
            Wire::Len => "length-delimited",
            Wire::Fixed32 => "32-bit",
        }
    }
}

/// A cursor over one message's bytes; `base` is the message's offset in the file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self, ctx: &Ctx, field: &str) -> Result<u64> {
        let start = self.offset();
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(ctx.err(field, start, "truncated varint (the file ends inside it)"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(ctx.err(field, start, "malformed varint (more than 64 bits)"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ctx.err(field, start, "malformed varint (longer than 10 bytes)"))
    }

    fn fixed<const N: usize>(&mut self, ctx: &Ctx, field: &str) -> Result<[u8; N]> {
        let start = self.offset();
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(ctx.err(field, start, format!("truncated {}-byte value", N)));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    /// The next field key, or `None` at the end of the message.
    fn key(&mut self, ctx: &Ctx, msg: &str) -> Result<Option<(u64, Wire)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.offset();
        let key = self.varint(ctx, msg)?;
        let field = key >> 3;
        if field == 0 {
            return Err(ctx.err(msg, at, "field number 0 is not valid protobuf"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            5 => Wire::Fixed32,
            3 | 4 => {
                return Err(ctx.err(
                    msg,
                    at,
                    format!("field {field} uses the deprecated group encoding"),
                ));
            }
            w => return Err(ctx.err(msg, at, format!("field {field} has invalid wire type {w}"))),
        };
        Ok(Some((field, wire)))
    }

    fn expect(&self, ctx: &Ctx, wire: Wire, want: Wire, field: &str) -> Result<()> {
        if wire == want {
            Ok(())
        } else {
            Err(ctx.err(
                field,
                self.offset(),
                format!(
                    "wrong type: encoded as {}, expected {}",
                    wire.name(),
                    want.name()
                ),
            ))
        }
    }

    /// A length-delimited payload and its offset in the file.
    fn bytes(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<(&'a [u8], usize)> {
        self.expect(ctx, wire, Wire::Len, field)?;
        let at = self.offset();
        let len = self.varint(ctx, field)?;
        let remaining = self.buf.len() - self.pos;
        if len > remaining as u64 {
            return Err(ctx.err(
                field,
                at,
                format!("declares {len} bytes but only {remaining} remain (truncated or corrupt)"),
            ));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok((&self.buf[start..self.pos], self.base + start))
    }

    fn message(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<(&'a [u8], usize)> {
        self.bytes(ctx, wire, field)
    }

    fn string(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<String> {
        let (b, at) = self.bytes(ctx, wire, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| ctx.err(field, at, "not valid UTF-8 text"))
    }

    fn int64(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<i64> {
        self.expect(ctx, wire, Wire::Varint, field)?;
        Ok(self.varint(ctx, field)? as i64)
    }

    fn int32(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<i32> {
        // Protobuf keeps the low 32 bits of an int32 varint (negative values are sign-extended
        // to 64 bits on the wire).
        Ok(self.int64(ctx, wire, field)? as i32)
    }

    fn float(&mut self, ctx: &Ctx, wire: Wire, field: &str) -> Result<f32> {
        self.expect(ctx, wire, Wire::Fixed32, field)?;
        Ok(f32::from_le_bytes(self.fixed::<4>(ctx, field)?))
    }

    /// A repeated varint field, packed or not, appended to `out`.
    fn repeated_varint(
        &mut self,
        ctx: &Ctx,
        wire: Wire,
        field: &str,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        match wire {
            Wire::Varint => out.push(self.varint(ctx, field)?),
            Wire::Len => {
                let (b, at) = self.bytes(ctx, wire, field)?;
                let mut sub = Reader::new(b, at);
                while sub.pos < b.len() {
                    out.push(sub.varint(ctx, field)?);
                }
            }
            _ => self.expect(ctx, wire, Wire::Varint, field)?,
        }
        Ok(())
    }

    /// A repeated fixed-width field, packed or not, appended to `out`.
    fn repeated_fixed<const N: usize>(
        &mut self,
        ctx: &Ctx,
        wire: Wire,
        want: Wire,
        field: &str,
        out: &mut Vec<[u8; N]>,
    ) -> Result<()> {
        if wire == want {
            out.push(self.fixed::<N>(ctx, field)?);
            return Ok(());
        }
        self.expect(ctx, wire, Wire::Len, field).map_err(|_| {
            ctx.err(
                field,
                self.offset(),
                format!(
                    "wrong type: encoded as {}, expected {} or packed",
                    wire.name(),
                    want.name()
                ),
            )
        })?;
        let (b, at) = self.bytes(ctx, wire, field)?;
        if b.len() % N != 0 {
            return Err(ctx.err(
                field,
                at,
                format!(
                    "packed {}-byte values: {} bytes is not a multiple of {N}",
                    N,
                    b.len()
                ),
            ));
        }
        out.extend(b.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        }));
        Ok(())
    }

    fn skip(&mut self, ctx: &Ctx, wire: Wire, msg: &str) -> Result<()> {
        match wire {
            Wire::Varint => {
                self.varint(ctx, msg)?;
            }
            Wire::Fixed64 => {
                self.fixed::<8>(ctx, msg)?;
            }
            Wire::Fixed32 => {
                self.fixed::<4>(ctx, msg)?;
            }
            Wire::Len => {
                self.bytes(ctx, wire, msg)?;
            }
        }
        Ok(())
    }
}

fn depth_check(ctx: &Ctx, depth: usize, field: &str, at: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        Err(ctx.err(
            field,
            at,
            format!("messages nested more than {MAX_DEPTH} levels deep"),
        ))
    } else {
        Ok(())
    }
}

fn parse_opset(ctx: &Ctx, bytes: &[u8], base: usize, at: &str) -> Result<(String, i64)> {
    let mut r = Reader::new(bytes, base);
    let (mut domain, mut version) = (String::new(), 0);
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => domain = r.string(ctx, wire, &format!("{at}.domain"))?,
            2 => version = r.int64(ctx, wire, &format!("{at}.version"))?,
            _ => r.skip(ctx, wire, at)?,
        }
    }
    Ok((domain, version))
}

fn parse_graph(ctx: &Ctx, bytes: &[u8], base: usize, at: &str, depth: usize) -> Result<GraphProto> {
    depth_check(ctx, depth, at, base)?;
    let mut g = GraphProto::default();
    let mut r = Reader::new(bytes, base);
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => {
                let where_ = format!("{at}.node[{}]", g.node.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                g.node.push(parse_node(ctx, sub, off, &where_, depth + 1)?);
            }
            2 => g.name = r.string(ctx, wire, &format!("{at}.name"))?,
            5 => {
                let where_ = format!("{at}.initializer[{}]", g.initializer.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                g.initializer
                    .push(parse_tensor(ctx, sub, off, &where_, depth + 1)?);
            }
            11..=13 => {
                let (list, name) = match field {
                    11 => (&mut g.input, "input"),
                    12 => (&mut g.output, "output"),
                    _ => (&mut g.value_info, "value_info"),
                };
                let where_ = format!("{at}.{name}[{}]", list.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                list.push(parse_value_info(ctx, sub, off, &where_, depth + 1)?);
            }
            15 => {
                // SparseTensorProto: values (1), indices (2), dims (3). Only the name of its
                // values tensor is kept, so that a reference to it gets a clear error.
                let where_ = format!(
                    "{at}.sparse_initializer[{}]",
                    g.sparse_initializer_names.len()
                );
                let (sub, off) = r.message(ctx, wire, &where_)?;
                depth_check(ctx, depth + 1, &where_, off)?;
                let mut sr = Reader::new(sub, off);
                let mut name = String::new();
                while let Some((f, w)) = sr.key(ctx, &where_)? {
                    if f == 1 {
                        let (vals, voff) = sr.message(ctx, w, &format!("{where_}.values"))?;
                        let t =
                            parse_tensor(ctx, vals, voff, &format!("{where_}.values"), depth + 2)?;
                        name = t.name;
                    } else {
                        sr.skip(ctx, w, &where_)?;
                    }
                }
                g.sparse_initializer_names.push(name);
            }
            _ => r.skip(ctx, wire, at)?,
        }
    }
    Ok(g)
}

fn parse_node(ctx: &Ctx, bytes: &[u8], base: usize, at: &str, depth: usize) -> Result<NodeProto> {
    depth_check(ctx, depth, at, base)?;
    let mut n = NodeProto::default();
    let mut r = Reader::new(bytes, base);
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => n.input.push(r.string(ctx, wire, &format!("{at}.input"))?),
            2 => n.output.push(r.string(ctx, wire, &format!("{at}.output"))?),
            3 => n.name = r.string(ctx, wire, &format!("{at}.name"))?,
            4 => n.op_type = r.string(ctx, wire, &format!("{at}.op_type"))?,
            7 => n.domain = r.string(ctx, wire, &format!("{at}.domain"))?,
            5 => {
                let where_ = format!("{at}.attribute[{}]", n.attribute.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                n.attribute
                    .push(parse_attribute(ctx, sub, off, &where_, depth + 1)?);
            }
            _ => r.skip(ctx, wire, at)?,
        }
    }
    Ok(n)
}

fn parse_attribute(
    ctx: &Ctx,
    bytes: &[u8],
    base: usize,
    at: &str,
    depth: usize,
) -> Result<AttributeProto> {
    depth_check(ctx, depth, at, base)?;
    let mut a = AttributeProto::default();
    let mut r = Reader::new(bytes, base);
    let mut ints = Vec::new();
    let mut floats = Vec::new();
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => a.name = r.string(ctx, wire, &format!("{at}.name"))?,
            20 => a.r#type = r.int32(ctx, wire, &format!("{at}.type"))?,
            21 => a.ref_attr_name = Some(r.string(ctx, wire, &format!("{at}.ref_attr_name"))?),
            2 => a.f = Some(r.float(ctx, wire, &format!("{at}.f"))?),
            3 => a.i = Some(r.int64(ctx, wire, &format!("{at}.i"))?),
            4 => a.s = Some(r.bytes(ctx, wire, &format!("{at}.s"))?.0.to_vec()),
            5 => {
                let where_ = format!("{at}.t");
                let (sub, off) = r.message(ctx, wire, &where_)?;
                a.t = Some(parse_tensor(ctx, sub, off, &where_, depth + 1)?);
            }
            6 => {
                let where_ = format!("{at}.g");
                let (sub, off) = r.message(ctx, wire, &where_)?;
                a.g = Some(parse_graph(ctx, sub, off, &where_, depth + 1)?);
            }
            7 => r.repeated_fixed::<4>(
                ctx,
                wire,
                Wire::Fixed32,
                &format!("{at}.floats"),
                &mut floats,
            )?,
            8 => r.repeated_varint(ctx, wire, &format!("{at}.ints"), &mut ints)?,
            9 => a
                .strings
                .push(r.bytes(ctx, wire, &format!("{at}.strings"))?.0.to_vec()),
            10 => {
                let where_ = format!("{at}.tensors[{}]", a.tensors.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                a.tensors
                    .push(parse_tensor(ctx, sub, off, &where_, depth + 1)?);
            }
            11 => {
                let where_ = format!("{at}.graphs[{}]", a.graphs.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                a.graphs
                    .push(parse_graph(ctx, sub, off, &where_, depth + 1)?);
            }
            _ => r.skip(ctx, wire, at)?,
        }
    }
    a.ints = ints.into_iter().map(|v| v as i64).collect();
    a.floats = floats.into_iter().map(f32::from_le_bytes).collect();
    Ok(a)
}

fn parse_tensor(
    ctx: &Ctx,
    bytes: &[u8],
    base: usize,
    at: &str,
    depth: usize,
) -> Result<TensorProto> {
    depth_check(ctx, depth, at, base)?;
    let mut t = TensorProto::default();
    let mut r = Reader::new(bytes, base);
    let (mut dims, mut int32s, mut int64s, mut uint64s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut floats, mut doubles) = (Vec::new(), Vec::new());
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => r.repeated_varint(ctx, wire, &format!("{at}.dims"), &mut dims)?,
            2 => t.data_type = r.int32(ctx, wire, &format!("{at}.data_type"))?,
            3 => {
                r.skip(ctx, wire, at)?;
                t.has_segment = true;
            }
            4 => r.repeated_fixed::<4>(
                ctx,
                wire,
                Wire::Fixed32,
                &format!("{at}.float_data"),
                &mut floats,
            )?,
            5 => r.repeated_varint(ctx, wire, &format!("{at}.int32_data"), &mut int32s)?,
            6 => {
                r.bytes(ctx, wire, &format!("{at}.string_data"))?;
                t.string_data_len += 1;
            }
            7 => r.repeated_varint(ctx, wire, &format!("{at}.int64_data"), &mut int64s)?,
            8 => t.name = r.string(ctx, wire, &format!("{at}.name"))?,
            9 => t.raw_data = Some(r.bytes(ctx, wire, &format!("{at}.raw_data"))?.0.to_vec()),
            10 => r.repeated_fixed::<8>(
                ctx,
                wire,
                Wire::Fixed64,
                &format!("{at}.double_data"),
                &mut doubles,
            )?,
            11 => r.repeated_varint(ctx, wire, &format!("{at}.uint64_data"), &mut uint64s)?,
            13 => {
                let where_ = format!("{at}.external_data[{}]", t.external_data.len());
                let (sub, off) = r.message(ctx, wire, &where_)?;
                let mut er = Reader::new(sub, off);
                let (mut k, mut v) = (String::new(), String::new());
                while let Some((f, w)) = er.key(ctx, &where_)? {
                    match f {
                        1 => k = er.string(ctx, w, &format!("{where_}.key"))?,
                        2 => v = er.string(ctx, w, &format!("{where_}.value"))?,
                        _ => er.skip(ctx, w, &where_)?,
                    }
                }
                t.external_data.push((k, v));
            }
            14 => t.data_location = r.int32(ctx, wire, &format!("{at}.data_location"))?,
            _ => r.skip(ctx, wire, at)?,
        }
    }
    t.dims = dims.into_iter().map(|v| v as i64).collect();
    t.int32_data = int32s.into_iter().map(|v| v as i32).collect();
    t.int64_data = int64s.into_iter().map(|v| v as i64).collect();
    t.uint64_data = uint64s;
    t.float_data = floats.into_iter().map(f32::from_le_bytes).collect();
    t.double_data = doubles.into_iter().map(f64::from_le_bytes).collect();
    Ok(t)
}

fn parse_value_info(
    ctx: &Ctx,
    bytes: &[u8],
    base: usize,
    at: &str,
    depth: usize,
) -> Result<ValueInfoProto> {
    depth_check(ctx, depth, at, base)?;
    let mut v = ValueInfoProto::default();
    let mut r = Reader::new(bytes, base);
    while let Some((field, wire)) = r.key(ctx, at)? {
        match field {
            1 => v.name = r.string(ctx, wire, &format!("{at}.name"))?,
            2 => {
                // TypeProto: only tensor_type (1) is read; sequences, maps and optionals are
                // skipped without descending into them.
                let where_ = format!("{at}.type");
                let (sub, off) = r.message(ctx, wire, &where_)?;
                let mut tr = Reader::new(sub, off);
                while let Some((f, w)) = tr.key(ctx, &where_)? {
                    if f != 1 {
                        tr.skip(ctx, w, &where_)?;
                        continue;
                    }
                    let tt_at = format!("{where_}.tensor_type");
                    let (tt, toff) = tr.message(ctx, w, &tt_at)?;
                    let mut ttr = Reader::new(tt, toff);
                    while let Some((f, w)) = ttr.key(ctx, &tt_at)? {
                        match f {
                            1 => {
                                v.elem_type =
                                    Some(ttr.int32(ctx, w, &format!("{tt_at}.elem_type"))?)
                            }
                            2 => {
                                let sh_at = format!("{tt_at}.shape");
                                let (sh, soff) = ttr.message(ctx, w, &sh_at)?;
                                v.shape = Some(parse_shape(ctx, sh, soff, &sh_at)?);
                            }
                            _ => ttr.skip(ctx, w, &tt_at)?,
                        }
                    }
                }
            }
            _ => r.skip(ctx, wire, at)?,
        }
    }
    Ok(v)
}

fn parse_shape(ctx: &Ctx, bytes: &[u8], base: usize, at: &str) -> Result<Vec<Dim>> {
    let mut dims = Vec::new();
    let mut r = Reader::new(bytes, base);
    while let Some((field, wire)) = r.key(ctx, at)? {
        if field != 1 {
            r.skip(ctx, wire, at)?;
            continue;
        }
        let where_ = format!("{at}.dim[{}]", dims.len());
        let (sub, off) = r.message(ctx, wire, &where_)?;
        let mut dr = Reader::new(sub, off);
        let mut dim = Dim::Unknown;
        while let Some((f, w)) = dr.key(ctx, &where_)? {
            match f {
                1 => dim = Dim::Value(dr.int64(ctx, w, &format!("{where_}.dim_value"))?),
                2 => dim = Dim::Param(dr.string(ctx, w, &format!("{where_}.dim_param"))?),
                _ => dr.skip(ctx, w, &where_)?,
            }
        }
        dims.push(dim);
    }
    Ok(dims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal protobuf writer for tests.
    #[derive(Default)]
    pub(crate) struct W(pub Vec<u8>);

    impl W {
        pub fn varint(&mut self, mut v: u64) -> &mut Self {
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
        pub fn key(&mut self, field: u64, wire: u64) -> &mut Self {
            self.varint(field << 3 | wire)
        }
        pub fn int(&mut self, field: u64, v: i64) -> &mut Self {
            self.key(field, 0).varint(v as u64)
        }
        pub fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
            self.key(field, 2).varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        pub fn msg(&mut self, field: u64, m: &W) -> &mut Self {
            self.bytes(field, &m.0)
        }
        pub fn float(&mut self, field: u64, v: f32) -> &mut Self {
            self.key(field, 5);
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
    }

    fn model_with_graph(g: &W) -> Vec<u8> {
        let mut m = W::default();
        m.int(1, 8).bytes(2, b"test").msg(7, g);
        m.0
    }

    #[test]
    fn reads_nodes_attributes_tensors_and_value_infos() {
        let mut attr = W::default();
        attr.bytes(1, b"strides").int(20, 7);
        attr.int(8, 2).int(8, 2); // unpacked ints
        let mut packed = W::default();
        packed.varint(1).varint(300);
        let mut attr2 = W::default();
        attr2.bytes(1, b"pads").bytes(8, &packed.0); // packed ints
        let mut attr3 = W::default();
        attr3.bytes(1, b"alpha").float(2, 0.5).int(20, 1);
        let mut node = W::default();
        node.bytes(1, b"x")
            .bytes(1, b"w")
            .bytes(2, b"y")
            .bytes(3, b"conv0")
            .bytes(4, b"Conv")
            .msg(5, &attr)
            .msg(5, &attr2)
            .msg(5, &attr3)
            .int(99, 5); // unknown field, skipped
        let mut t = W::default();
        t.int(1, 2)
            .int(1, 3)
            .int(2, 3)
            .bytes(8, b"w")
            .bytes(9, &[1, 2, 3, 4, 5, 0xff]);
        let mut neg = W::default();
        let mut vals = W::default();
        vals.varint(-5i64 as u64).varint(7);
        neg.int(1, 2).int(2, 6).bytes(8, b"b").bytes(5, &vals.0);
        let mut dim1 = W::default();
        dim1.int(1, 1);
        let mut dim2 = W::default();
        dim2.bytes(2, b"N");
        let mut shape = W::default();
        shape.msg(1, &dim1).msg(1, &dim2);
        let mut tt = W::default();
        tt.int(1, 2).msg(2, &shape);
        let mut ty = W::default();
        ty.msg(1, &tt);
        let mut vi = W::default();
        vi.bytes(1, b"x").msg(2, &ty);
        let mut g = W::default();
        g.msg(1, &node)
            .msg(5, &t)
            .msg(5, &neg)
            .msg(11, &vi)
            .bytes(2, b"main");
        let m = parse_model("m.onnx", &model_with_graph(&g)).unwrap();
        assert_eq!(m.ir_version, Some(8));
        assert_eq!(m.producer_name, "test");
        let g = m.graph.unwrap();
        assert_eq!(g.name, "main");
        let n = &g.node[0];
        assert_eq!((n.name.as_str(), n.op_type.as_str()), ("conv0", "Conv"));
        assert_eq!(n.input, vec!["x", "w"]);
        assert_eq!(n.attr("strides").unwrap().ints, vec![2, 2]);
        assert_eq!(n.attr("pads").unwrap().ints, vec![1, 300]);
        assert_eq!(n.attr("alpha").unwrap().f, Some(0.5));
        assert_eq!(g.initializer[0].dims, vec![2, 3]);
        assert_eq!(
            g.initializer[0].raw_data.as_deref(),
            Some(&[1, 2, 3, 4, 5, 0xff][..])
        );
        assert_eq!(g.initializer[1].int32_data, vec![-5, 7]);
        assert_eq!(g.input[0].elem_type, Some(2));
        assert_eq!(
            g.input[0].shape,
            Some(vec![Dim::Value(1), Dim::Param("N".into())])
        );
    }

    fn error_of(bytes: &[u8]) -> String {
        parse_model("bad.onnx", bytes).unwrap_err().to_string()
    }

    #[test]
    fn truncated_and_oversized_lengths_are_errors() {
        let mut g = W::default();
        g.bytes(2, b"graph-name");
        let full = model_with_graph(&g);
        // The graph is the last field; cutting anywhere inside it (after its key) is an error.
        let graph_at = full.len() - g.0.len() - 2;
        assert_eq!(full[graph_at], 7 << 3 | 2);
        for cut in graph_at + 1..full.len() {
            let e = error_of(&full[..cut]);
            assert!(e.starts_with("bad.onnx: field `"), "{e}");
        }
        // A length that claims far more bytes than there are.
        let mut m = W::default();
        m.key(7, 2).varint(u64::MAX >> 1);
        let e = error_of(&m.0);
        assert!(e.contains("declares") && e.contains("remain"), "{e}");
    }

    #[test]
    fn malformed_varints_wire_types_and_text_are_errors() {
        let e = error_of(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert!(e.contains("varint"), "{e}");
        let e = error_of(&[0x0b]); // field 1, wire type 3 (group)
        assert!(e.contains("group"), "{e}");
        let e = error_of(&[0x0e]); // wire type 6
        assert!(e.contains("invalid wire type"), "{e}");
        let e = error_of(&[0x00]);
        assert!(e.contains("field number 0"), "{e}");
        let mut m = W::default();
        m.key(1, 2).varint(1).0.push(0); // ir_version as bytes
        let e = error_of(&m.0);
        assert!(
            e.contains("model.ir_version") && e.contains("wrong type"),
            "{e}"
        );
        let mut m = W::default();
        m.bytes(2, &[0xff, 0xfe]);
        let e = error_of(&m.0);
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // graph -> node -> attribute (g) -> graph -> ... far deeper than MAX_DEPTH.
        let mut inner = W::default();
        inner.bytes(2, b"leaf");
        for _ in 0..200 {
            let mut attr = W::default();
            attr.bytes(1, b"body").msg(6, &inner);
            let mut node = W::default();
            node.bytes(4, b"If").msg(5, &attr);
            let mut graph = W::default();
            graph.msg(1, &node);
            inner = graph;
        }
        let e = error_of(&model_with_graph(&inner));
        assert!(e.contains("nested more than 64"), "{e}");
    }
}

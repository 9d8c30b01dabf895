//! Best-effort static shapes of a graph's tensors, for the operators that appear in quantized
//! CNNs. The shapes a model declares (graph inputs and outputs, `value_info`, initializers) come
//! first; the rest are propagated in node order from them. A dimension that cannot be known is
//! `None`; an operator qconv does not know leaves its outputs unknown. Never fails: shapes only
//! fill in what `--input` would otherwise have to give.

use std::collections::HashMap;

use super::proto::{Dim, GraphProto, NodeProto};
use crate::geometry::MAX_ELEMENTS;

/// A tensor's shape: its rank, and each dimension when known.
pub type Shape = Vec<Option<usize>>;

/// Largest dimension value believed (beyond it a declared dimension is treated as unknown).
const MAX_DIM: i64 = MAX_ELEMENTS as i64;

/// `[1,3,32,32]`, with `?` for unknown dimensions.
pub fn format(s: &Shape) -> String {
    let dims: Vec<String> = s
        .iter()
        .map(|d| d.map_or_else(|| "?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", dims.join(","))
}

fn dim(d: i64) -> Option<usize> {
    (0..=MAX_DIM).contains(&d).then_some(d as usize)
}

/// Shapes of the graph's tensors. `constant_ints` gives the values of small integer constants
/// (for Reshape and Pad).
pub fn infer(
    g: &GraphProto,
    constant_ints: &dyn Fn(&str) -> Option<Vec<i64>>,
) -> HashMap<String, Shape> {
    let mut shapes: HashMap<String, Shape> = HashMap::new();
    for t in &g.initializer {
        shapes.insert(t.name.clone(), t.dims.iter().map(|&d| dim(d)).collect());
    }
    let declared = g.input.iter().chain(&g.value_info).chain(&g.output);
    for v in declared {
        if let Some(s) = &v.shape {
            let s: Shape = s
                .iter()
                .map(|d| match d {
                    Dim::Value(v) => dim(*v),
                    _ => None,
                })
                .collect();
            shapes.insert(v.name.clone(), s);
        }
    }
    for n in &g.node {
        let outs = propagate(n, &shapes, constant_ints);
        for (name, s) in n.output.iter().zip(outs) {
            if let Some(s) = s
                && !name.is_empty()
            {
                shapes.entry(name.clone()).or_insert(s);
            }
        }
    }
    shapes
}

fn ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    n.attr(name).map(|a| a.ints.clone())
}

fn int(n: &NodeProto, name: &str) -> Option<i64> {
    n.attr(name).and_then(|a| a.i)
}

fn string(n: &NodeProto, name: &str) -> Option<String> {
    n.attr(name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// Output shapes of one node (`None`: unknown).
fn propagate(
    n: &NodeProto,
    shapes: &HashMap<String, Shape>,
    constant_ints: &dyn Fn(&str) -> Option<Vec<i64>>,
) -> Vec<Option<Shape>> {
    let input = |i: usize| -> Option<&Shape> {
        n.input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| shapes.get(s))
    };
    let one = |s: Option<Shape>| vec![s];
    match n.op_type.as_str() {
        "QuantizeLinear"
        | "DequantizeLinear"
        | "Relu"
        | "Clip"
        | "LeakyRelu"
        | "Sigmoid"
        | "HardSigmoid"
        | "HardSwish"
        | "Tanh"
        | "Identity"
        | "Cast"
        | "BatchNormalization"
        | "Dropout"
        | "Neg"
        | "Abs"
        | "Exp"
        | "Sqrt"
        | "Erf"
        | "Softmax"
        | "Elu"
        | "Selu"
        | "Gelu"
        | "PRelu"
        | "QLinearLeakyRelu"
        | "QLinearSigmoid"
        | "QLinearSoftmax"
        | "DynamicQuantizeLinear"
        | "Round"
        | "Floor"
        | "Ceil"
        | "Reciprocal" => one(input(0).cloned()),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Where" => {
            let all: Option<Vec<&Shape>> = (0..n.input.len()).map(input).collect();
            one(all.and_then(|s| broadcast(&s)))
        }
        "QLinearAdd" | "QLinearMul" => one(match (input(0), input(3)) {
            (Some(a), Some(b)) => broadcast(&[a, b]),
            _ => None,
        }),
        "Conv" | "ConvInteger" => one(conv_shape(n, input(0), input(1))),
        "QLinearConv" => one(if int(n, "channels_last") == Some(1) {
            None
        } else {
            conv_shape(n, input(0), input(3))
        }),
        "MaxPool" | "AveragePool" | "LpPool" | "QLinearAveragePool" => {
            if int(n, "channels_last") == Some(1) {
                return one(None);
            }
            one(input(0).and_then(|x| pool_shape(n, x)))
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "QLinearGlobalAveragePool" => {
            if int(n, "channels_last") == Some(1) {
                return one(None);
            }
            one(input(0).filter(|x| x.len() >= 2).map(|x| {
                let mut s = x[..2].to_vec();
                s.resize(x.len(), Some(1));
                s
            }))
        }
        "Concat" => {
            let all: Option<Vec<&Shape>> = (0..n.input.len()).map(input).collect();
            one(all.and_then(|s| concat(&s, int(n, "axis")?)))
        }
        "QLinearConcat" => {
            // Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples.
            let all: Option<Vec<&Shape>> = (2..n.input.len()).step_by(3).map(input).collect();
            one(all.and_then(|s| concat(&s, int(n, "axis")?)))
        }
        "Flatten" => one(input(0).and_then(|x| {
            let axis = int(n, "axis").unwrap_or(1);
            let axis = normalize_axis(axis, x.len() + 1)?;
            Some(vec![product(&x[..axis]), product(&x[axis..])])
        })),
        "Transpose" => one(input(0).and_then(|x| {
            let perm = ints(n, "perm").unwrap_or_else(|| (0..x.len() as i64).rev().collect());
            if perm.len() != x.len() {
                return None;
            }
            perm.iter()
                .map(|&p| usize::try_from(p).ok().and_then(|p| x.get(p).copied()))
                .collect()
        })),
        "Reshape" => one(input(0).and_then(|x| {
            let target = constant_ints(n.input.get(1)?)?;
            reshape(x, &target, int(n, "allowzero") == Some(1))
        })),
        "Pad" => one(input(0).and_then(|x| {
            let pads = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(p) => constant_ints(p)?,
                None => ints(n, "pads")?,
            };
            if pads.len() != 2 * x.len() || n.input.get(3).is_some_and(|a| !a.is_empty()) {
                return None;
            }
            x.iter()
                .enumerate()
                .map(|(i, &d)| {
                    let v = (d? as i64)
                        .checked_add(pads[i])?
                        .checked_add(pads[i + x.len()])?;
                    Some(dim(v))
                })
                .collect::<Option<Vec<_>>>()
        })),
        _ => vec![None; n.output.len()],
    }
}

fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

fn product(dims: &[Option<usize>]) -> Option<usize> {
    dims.iter().try_fold(1usize, |p, &d| {
        p.checked_mul(d?).filter(|&p| p <= MAX_ELEMENTS)
    })
}

/// NumPy broadcasting of known shapes.
fn broadcast(shapes: &[&Shape]) -> Option<Shape> {
    let rank = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![Some(1usize); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            *o = match (*o, d) {
                (Some(1), d) => d,
                (a, Some(1)) => a,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(_), Some(_)) => return None,
                _ => None,
            };
        }
    }
    Some(out)
}

fn concat(shapes: &[&Shape], axis: i64) -> Option<Shape> {
    let first = shapes.first()?;
    let axis = normalize_axis(axis, first.len())?;
    let mut out = (*first).clone();
    for s in &shapes[1..] {
        if s.len() != out.len() {
            return None;
        }
        out[axis] = match (out[axis], s[axis]) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
    }
    Some(out)
}

fn reshape(x: &Shape, target: &[i64], allow_zero: bool) -> Option<Shape> {
    let mut out: Shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(None);
            }
            0 if !allow_zero => out.push(*x.get(i)?),
            t => out.push(Some(dim(t)?)),
        }
    }
    if let Some(i) = infer_at {
        let total = product(x)?;
        let rest = product(
            &out.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &d)| d)
                .collect::<Vec<_>>(),
        )?;
        if rest == 0 || total % rest != 0 {
            return None;
        }
        out[i] = Some(total / rest);
    }
    Some(out)
}

/// Spatial output size of a conv or pool along one axis.
#[allow(clippy::too_many_arguments)]
fn spatial(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    auto_pad: &str,
    ceil: bool,
) -> Option<usize> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        return None;
    }
    match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => return Some(input.div_ceil(stride)),
        "VALID" => {
            let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
            return Some(input.checked_sub(span)? / stride + 1);
        }
        _ => {}
    }
    let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let padded = input.checked_add(pad_begin)?.checked_add(pad_end)?;
    let room = padded.checked_sub(span)?;
    Some(
        if ceil {
            room.div_ceil(stride)
        } else {
            room / stride
        } + 1,
    )
}

fn conv_like(
    n: &NodeProto,
    x: &Shape,
    kernel: &[Option<usize>],
    ceil: bool,
) -> Option<Vec<Option<usize>>> {
    let sp = x.len().checked_sub(2)?;
    if kernel.len() != sp {
        return None;
    }
    let attr = |name: &str, default: i64, len: usize| -> Option<Vec<usize>> {
        let v = ints(n, name).unwrap_or_else(|| vec![default; len]);
        if v.len() != len {
            return None;
        }
        v.into_iter().map(dim).collect()
    };
    let strides = attr("strides", 1, sp)?;
    let dilations = attr("dilations", 1, sp)?;
    let pads = attr("pads", 0, 2 * sp)?;
    let auto_pad = string(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    Some(
        (0..sp)
            .map(|i| {
                spatial(
                    x[2 + i]?,
                    kernel[i]?,
                    strides[i],
                    dilations[i],
                    pads[i],
                    pads[i + sp],
                    &auto_pad,
                    ceil,
                )
            })
            .collect(),
    )
}

fn conv_shape(n: &NodeProto, x: Option<&Shape>, w: Option<&Shape>) -> Option<Shape> {
    let (x, w) = (x?, w?);
    if x.len() < 3 || w.len() != x.len() {
        return None;
    }
    let kernel: Shape = match ints(n, "kernel_shape") {
        Some(k) => k.into_iter().map(dim).collect(),
        None => w[2..].to_vec(),
    };
    let mut out = vec![x[0], w[0]];
    out.extend(conv_like(n, x, &kernel, false)?);
    Some(out)
}

fn pool_shape(n: &NodeProto, x: &Shape) -> Option<Shape> {
    let kernel: Shape = ints(n, "kernel_shape")?.into_iter().map(dim).collect();
    let mut out = vec![*x.first()?, *x.get(1)?];
    out.extend(conv_like(n, x, &kernel, int(n, "ceil_mode") == Some(1))?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::onnx::proto::AttributeProto;

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn conv_pool_and_broadcast_shapes() {
        let mut shapes = HashMap::new();
        shapes.insert("x".to_string(), vec![Some(1), Some(8), Some(15), Some(15)]);
        shapes.insert("w".to_string(), vec![Some(16), Some(8), Some(3), Some(3)]);
        shapes.insert("b".to_string(), vec![Some(8), Some(1), Some(1)]);
        let none = |_: &str| None;
        let conv = node(
            "Conv",
            &["x", "w"],
            vec![
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        );
        assert_eq!(
            propagate(&conv, &shapes, &none)[0],
            Some(vec![Some(1), Some(16), Some(8), Some(8)])
        );
        let pool = node(
            "MaxPool",
            &["x"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        );
        assert_eq!(
            propagate(&pool, &shapes, &none)[0],
            Some(vec![Some(1), Some(8), Some(7), Some(7)])
        );
        let add = node("Add", &["w", "b"], vec![]);
        assert_eq!(
            propagate(&add, &shapes, &none)[0],
            Some(vec![Some(16), Some(8), Some(3), Some(3)])
        );
        let unknown = node("Frobnicate", &["x"], vec![]);
        assert_eq!(propagate(&unknown, &shapes, &none)[0], None);
        // A zero stride leaves that dimension unknown (resolving the node reports it).
        let bad = node("Conv", &["x", "w"], vec![attr_ints("strides", &[0, 1])]);
        assert_eq!(
            propagate(&bad, &shapes, &none)[0],
            Some(vec![Some(1), Some(16), None, Some(13)])
        );
    }

    #[test]
    fn reshape_infers_one_dimension() {
        let x = vec![Some(2), Some(3), Some(4)];
        assert_eq!(reshape(&x, &[0, -1], false), Some(vec![Some(2), Some(12)]));
        assert_eq!(reshape(&x, &[5, -1], false), None);
    }
}

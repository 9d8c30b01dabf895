//! The JSON form of an explanation (schema `qconv-explain/1`, documented in docs/explain.md).
//! Built directly as maps: explanations of large layers have hundreds of thousands of causes.

use serde_json::{Map, Value};

use super::{Cause, Detail, Evidence, Explanation};

fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in entries {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

fn ints<T: Copy + Into<i64>>(v: &[T]) -> Value {
    Value::Array(v.iter().map(|&x| Value::from(x.into())).collect())
}

fn index(i: [usize; 4]) -> Value {
    Value::Array(i.iter().map(|&x| Value::from(x)).collect())
}

fn detail(c: &Cause) -> Value {
    match &c.detail {
        Detail::PairSaturation(p) => object([
            ("pair", Value::from(p.pair)),
            (
                "taps",
                Value::Array(
                    p.taps
                        .iter()
                        .map(|t| {
                            object([
                                ("k", Value::from(t.k)),
                                (
                                    "input",
                                    t.input
                                        .map_or(Value::Null, |i| index(i.map(|x| x as usize))),
                                ),
                                ("weight", index(t.weight.map(|x| x as usize))),
                                ("activation", Value::from(t.activation)),
                                ("weight_value", Value::from(t.weight_value)),
                                ("product", Value::from(t.activation * t.weight_value)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("sum", Value::from(p.sum)),
            ("saturated", Value::from(p.saturated)),
        ]),
        Detail::Int32Wrap { unwrapped } => object([("unwrapped", Value::from(*unwrapped))]),
        Detail::AccumulatorOverflow {
            width,
            exact,
            narrowed,
        } => object([
            ("bits", Value::from(width.bits)),
            ("overflow", Value::from(width.overflow.name())),
            ("exact", Value::from(*exact)),
            ("narrowed", Value::from(*narrowed)),
        ]),
        Detail::SamePaddingUnderflow { dimension, total } => object([
            ("dimension", Value::from(*dimension)),
            ("total", Value::from(*total)),
        ]),
        Detail::Rounding { from, to, evidence } => {
            let mut m = Map::new();
            m.insert("from".into(), Value::from(*from));
            m.insert("to".into(), Value::from(*to));
            let extra = match evidence {
                Evidence::Requant {
                    multiplier,
                    exact_multiplier,
                    engine_value,
                    exact_value,
                    rule,
                } => object([
                    (
                        "multiplier",
                        Value::Array(multiplier.iter().map(|&m| Value::from(m as f64)).collect()),
                    ),
                    ("exact_multiplier", Value::from(*exact_multiplier)),
                    ("engine_value", Value::from(*engine_value)),
                    ("exact_value", Value::from(*exact_value)),
                    ("rounding", Value::from(*rule)),
                ]),
                Evidence::Bias {
                    bias,
                    bias_in_acc_units,
                    bias_integer,
                } => object([
                    ("bias", Value::from(*bias)),
                    ("bias_in_acc_units", Value::from(*bias_in_acc_units)),
                    ("bias_integer", Value::from(*bias_integer)),
                ]),
                Evidence::FloatSum {
                    float_value,
                    exact_value,
                    error_steps,
                    boundary_distance_steps,
                    error_bound_steps,
                } => object([
                    ("float_value", Value::from(*float_value as f64)),
                    ("exact_value", Value::from(*exact_value)),
                    ("error_steps", Value::from(*error_steps)),
                    (
                        "boundary_distance_steps",
                        Value::from(*boundary_distance_steps),
                    ),
                    ("error_bound_steps", Value::from(*error_bound_steps)),
                ]),
                Evidence::Dequantization { tensor } => object([("tensor", Value::from(*tensor))]),
                Evidence::Clamp { range, relu } => object([
                    ("range", ints(&[range.0, range.1])),
                    ("relu", Value::from(*relu)),
                ]),
            };
            if let Value::Object(e) = extra {
                m.extend(e);
            }
            Value::Object(m)
        }
    }
}

/// The whole explanation as JSON.
pub(super) fn explanation(x: &Explanation) -> Value {
    let mut v = header(x);
    v["elements"] = elements(x, 0..x.elements.len());
    v
}

/// The `elements` array of the explanation, restricted to `range` (in element order).
pub(super) fn elements(x: &Explanation, range: std::ops::Range<usize>) -> Value {
    let labels: Vec<String> = x.engines.iter().map(|e| e.label()).collect();
    let label_of = |c: &Cause| {
        x.engines
            .iter()
            .position(|e| e.engine == c.engine)
            .map_or_else(|| c.engine.to_string(), |i| labels[i].clone())
    };
    let per_engine = |values: &mut dyn Iterator<Item = i64>| {
        let mut m = Map::new();
        for (l, v) in labels.iter().zip(values) {
            m.insert(l.clone(), Value::from(v));
        }
        Value::Object(m)
    };
    let elements: Vec<Value> = x.elements[range]
        .iter()
        .map(|el| {
            object([
                ("index", index(el.index)),
                (
                    "values",
                    per_engine(&mut el.values.iter().map(|&v| v as i64)),
                ),
                ("exact_acc", Value::from(el.exact_acc)),
                ("exact_value", Value::from(el.exact_value)),
                ("exact_output", Value::from(el.exact_output)),
                ("acc", per_engine(&mut el.acc.iter().copied())),
                (
                    "causes",
                    Value::Array(
                        el.causes
                            .iter()
                            .map(|c| {
                                object([
                                    ("engine", Value::from(label_of(c))),
                                    ("kind", Value::from(c.kind.name())),
                                    ("acc_delta", Value::from(c.acc_delta)),
                                    ("detail", detail(c)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    Value::Array(elements)
}

/// Everything but the elements: schema, layer, shape, engines, counts, summary, largest
/// difference; `elements` is an empty array.
pub(super) fn header(x: &Explanation) -> Value {
    let labels: Vec<String> = x.engines.iter().map(|e| e.label()).collect();
    let summary: Vec<Value> = x
        .cause_counts()
        .into_iter()
        .map(|(e, kind, c)| {
            object([
                ("engine", Value::from(labels[e].clone())),
                ("kind", Value::from(kind.name())),
                ("elements", Value::from(c.elements)),
                ("occurrences", Value::from(c.occurrences)),
                ("acc_delta", Value::from(c.acc_delta)),
            ])
        })
        .collect();
    let engines: Vec<Value> = x
        .engines
        .iter()
        .map(|e| {
            object([
                ("name", Value::from(e.label())),
                ("engine", Value::from(e.engine.name())),
                ("isa", e.isa.map_or(Value::Null, |i| Value::from(i.name()))),
                ("route", Value::from(e.route.clone())),
                (
                    "warnings",
                    Value::Array(e.warnings.iter().map(|w| Value::from(w.clone())).collect()),
                ),
            ])
        })
        .collect();
    object([
        ("schema", Value::from("qconv-explain/1")),
        ("layer", Value::from(x.layer.clone())),
        ("shape", index(x.shape)),
        ("engines", Value::Array(engines)),
        ("total_elements", Value::from(x.total())),
        ("differing_elements", Value::from(x.elements.len())),
        ("summary", Value::Array(summary)),
        (
            "largest_difference",
            x.largest_difference().map_or(Value::Null, |(d, i)| {
                object([("difference", Value::from(d)), ("index", index(i))])
            }),
        ),
        ("elements", Value::Array(Vec::new())),
    ])
}

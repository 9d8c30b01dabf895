//! NumPy `.npy` files (format versions 1.0 to 3.0): reading integer and float arrays, writing
//! integer arrays.

use crate::error::{Error, Result};
use crate::geometry::MAX_ELEMENTS;

/// The elements of an `.npy` array, widened.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

/// An array read from an `.npy` file, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Uint,
    Float,
    Bool,
}

/// Parses the bytes of an `.npy` file; `path` names it in errors.
pub fn parse(path: &str, bytes: &[u8]) -> Result<NpyArray> {
    let err = |msg: String| Error::parse(path, "", msg);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("not an .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(err(format!("unsupported .npy format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| err("truncated header".into()))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| err("header is not text".into()))?;
    let descr = dict_value(header, "descr").ok_or_else(|| err("header has no 'descr'".into()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| err("header has no 'fortran_order'".into()))?;
    let fortran = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err(err(format!("bad fortran_order `{other}`"))),
    };
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| err("header has no 'shape'".into()))?;
    let shape = parse_shape(&shape_text).ok_or_else(|| err(format!("bad shape `{shape_text}`")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| {
            n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS)
        })
        .ok_or_else(|| err(format!("shape {shape:?} is absurdly large")))?;

    let (endian, kind, size) = parse_descr(descr).ok_or_else(|| {
        err(format!(
            "unsupported dtype '{descr}' (expected an integer or float type)"
        ))
    })?;
    let payload = &bytes[end..];
    let needed = count * size;
    if payload.len() < needed {
        return Err(err(format!(
            "truncated: shape {shape:?} of '{descr}' needs {needed} data bytes, found {}",
            payload.len()
        )));
    }
    let little = endian != '>';
    let element = |i: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        let src = &payload[i * size..(i + 1) * size];
        if little {
            b[..size].copy_from_slice(src);
        } else {
            for (j, &v) in src.iter().rev().enumerate() {
                b[j] = v;
            }
        }
        b
    };
    let mut data = match kind {
        Kind::Float => NpyData::Float(
            (0..count)
                .map(|i| {
                    let b = element(i);
                    if size == 4 {
                        f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
                    } else {
                        f64::from_le_bytes(b)
                    }
                })
                .collect(),
        ),
        Kind::Int | Kind::Uint | Kind::Bool => {
            let signed = matches!(kind, Kind::Int);
            let mut out = Vec::with_capacity(count);
            for i in 0..count {
                let b = element(i);
                let u = u64::from_le_bytes(b);
                let v = if signed {
                    let shift = 64 - 8 * size as u32;
                    ((u << shift) as i64) >> shift
                } else if size == 8 && u > i64::MAX as u64 {
                    return Err(err(format!(
                        "element {i} ({u}) does not fit in 64-bit signed"
                    )));
                } else {
                    u as i64
                };
                out.push(v);
            }
            NpyData::Int(out)
        }
    };
    if fortran && shape.len() > 1 {
        data = to_c_order(&shape, data);
    }
    Ok(NpyArray { shape, data })
}

/// Reorders column-major data into row-major.
fn to_c_order(shape: &[usize], data: NpyData) -> NpyData {
    let count: usize = shape.iter().product();
    // Column-major strides.
    let mut strides = vec![1usize; shape.len()];
    for d in 1..shape.len() {
        strides[d] = strides[d - 1] * shape[d - 1];
    }
    let source_index = |mut i: usize| {
        let mut s = 0;
        for d in (0..shape.len()).rev() {
            s += (i % shape[d]) * strides[d];
            i /= shape[d];
        }
        s
    };
    match data {
        NpyData::Int(v) => NpyData::Int((0..count).map(|i| v[source_index(i)]).collect()),
        NpyData::Float(v) => NpyData::Float((0..count).map(|i| v[source_index(i)]).collect()),
    }
}

fn parse_descr(descr: &str) -> Option<(char, Kind, usize)> {
    let mut chars = descr.chars();
    let endian = chars.next()?;
    if !matches!(endian, '<' | '>' | '|' | '=') {
        return None;
    }
    let kind = match chars.next()? {
        'i' => Kind::Int,
        'u' => Kind::Uint,
        'f' => Kind::Float,
        'b' => Kind::Bool,
        _ => return None,
    };
    let size: usize = chars.as_str().parse().ok()?;
    let ok = match kind {
        Kind::Float => matches!(size, 4 | 8),
        Kind::Bool => size == 1,
        _ => matches!(size, 1 | 2 | 4 | 8),
    };
    ok.then_some((endian, kind, size))
}

/// The text of `key`'s value in a Python dict literal (up to the next top-level comma).
fn dict_value(header: &str, key: &str) -> Option<String> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim().to_string()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// The `.npy` dtype of an output dtype.
fn descr_of(dtype: crate::DType) -> (&'static str, usize) {
    match dtype {
        crate::DType::Uint8 => ("|u1", 1),
        crate::DType::Int8 => ("|i1", 1),
        crate::DType::Int32 => ("<i4", 4),
    }
}

/// Encodes integer `values` of `dtype` with `shape` as an `.npy` (version 1.0) file.
pub fn encode(dtype: crate::DType, shape: &[usize], values: &[i32]) -> Vec<u8> {
    let (descr, size) = descr_of(dtype);
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * size);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in values {
        out.extend_from_slice(&v.to_le_bytes()[..size]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn round_trips_integer_arrays() {
        let bytes = encode(DType::Int32, &[2, 3], &[1, -2, 3, -4, 5, i32::MIN]);
        assert_eq!((bytes.len() - 24) % 64, 0);
        let a = parse("x.npy", &bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::Int(vec![1, -2, 3, -4, 5, i32::MIN as i64]));
        let a = parse("x.npy", &encode(DType::Int8, &[3], &[-1, 0, 127])).unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.data, NpyData::Int(vec![-1, 0, 127]));
        let a = parse("x.npy", &encode(DType::Uint8, &[1, 1, 1, 2], &[255, 0])).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![255, 0]));
    }

    #[test]
    fn reads_fortran_order_and_big_endian() {
        let header = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        // Column-major [[1,2,3],[4,5,6]] is 1,4,2,5,3,6.
        for v in [1i16, 4, 2, 5, 3, 6] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let a = parse("x.npy", &bytes).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let e = parse("x.npy", b"hello world").unwrap_err().to_string();
        assert!(e.contains("x.npy") && e.contains("magic"), "{e}");
        let mut bytes = encode(DType::Int32, &[4], &[1, 2, 3, 4]);
        bytes.truncate(bytes.len() - 3);
        let e = parse("x.npy", &bytes).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let header = "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 8]);
        let e = parse("x.npy", &bytes).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
        let header =
            "{'descr': '<i4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        let e = parse("x.npy", &bytes).unwrap_err().to_string();
        assert!(e.contains("absurdly large"), "{e}");
    }
}

//! CSV tensors: one innermost row per line.
//!
//! A tensor of shape `[d0, ..., dk]` is written as `d0 * ... * d(k-1)` lines of `dk` values,
//! in row-major order: for an NCHW tensor each line holds one row of `W` values, and the lines run
//! over `n`, then `c`, then `h`. A 1-D tensor is one line. Values are separated by commas; blank
//! lines and lines starting with `#` are ignored.

use std::fmt::Write;

use crate::error::{Error, Result};

/// Parses CSV `text` holding a tensor of `shape`; `path` names the file in errors.
pub fn parse(path: &str, text: &str, shape: &[usize]) -> Result<Vec<f64>> {
    let width = *shape.last().unwrap_or(&1);
    let rows: usize = shape.iter().rev().skip(1).product();
    let mut values = Vec::with_capacity(rows * width);
    let mut seen_rows = 0;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let location = format!("line {line_no}");
        if seen_rows == rows {
            return Err(Error::parse(
                path,
                location,
                format!("more lines than the {rows} rows shape {shape:?} has"),
            ));
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        if fields.len() != width {
            return Err(Error::parse(
                path,
                location,
                format!(
                    "expected {width} values (the last dimension of shape {shape:?}), found {}",
                    fields.len()
                ),
            ));
        }
        for (j, field) in fields.iter().enumerate() {
            let v: f64 = field.parse().map_err(|_| {
                Error::parse(
                    path,
                    format!("line {line_no}, column {}", j + 1),
                    format!("`{field}` is not a number"),
                )
            })?;
            values.push(v);
        }
        seen_rows += 1;
    }
    if seen_rows != rows {
        return Err(Error::parse(
            path,
            "",
            format!("found {seen_rows} rows, shape {shape:?} needs {rows} lines of {width} values"),
        ));
    }
    Ok(values)
}

/// Formats integer `values` of `shape` in the same layout.
pub fn format(shape: &[usize], values: &[i32]) -> String {
    let width = (*shape.last().unwrap_or(&1)).max(1);
    let mut out = String::with_capacity(values.len() * 4);
    for row in values.chunks(width) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write!(out, "{v}").expect("writing to a String");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = format(&[1, 2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(text, "1,2,3\n4,5,6\n7,8,9\n10,11,12\n");
        let v = parse("t.csv", &format!("# comment\n\n{text}"), &[1, 2, 2, 3]).unwrap();
        assert_eq!(v, (1..=12).map(f64::from).collect::<Vec<_>>());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("t.csv", "1,2\n3\n", &[2, 2]).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.csv: line 2: expected 2 values (the last dimension of shape [2, 2]), found 1"
        );
        let e = parse("t.csv", "1,2\n3,x\n", &[2, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 2") && e.contains("`x`"), "{e}");
        let e = parse("t.csv", "1,2\n", &[2, 2]).unwrap_err().to_string();
        assert!(e.contains("found 1 rows"), "{e}");
        let e = parse("t.csv", "1,2\n3,4\n5,6\n", &[2, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("more lines"), "{e}");
    }
}

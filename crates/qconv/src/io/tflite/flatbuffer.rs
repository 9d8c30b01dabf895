//! A minimal, bounds-checked FlatBuffers reader: tables, scalars, strings and vectors, as much as
//! reading a TFLite model needs. Every access checks its bounds; malformed input is an error
//! naming the field, never a panic.

/// A reading error: the field path (filled in by callers as they go up) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FbError {
    pub field: String,
    pub message: String,
}

impl FbError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FbError {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type FbResult<T> = std::result::Result<T, FbError>;

/// The whole buffer, with bounds-checked little-endian reads.
#[derive(Clone, Copy)]
pub struct Buffer<'a> {
    pub bytes: &'a [u8],
}

impl<'a> Buffer<'a> {
    fn slice(&self, pos: usize, len: usize, field: &str) -> FbResult<&'a [u8]> {
        pos.checked_add(len)
            .and_then(|end| self.bytes.get(pos..end))
            .ok_or_else(|| {
                FbError::new(
                    field,
                    format!(
                        "points outside the file ({len} bytes at offset {pos}, file has {})",
                        self.bytes.len()
                    ),
                )
            })
    }

    pub fn u8(&self, pos: usize, field: &str) -> FbResult<u8> {
        Ok(self.slice(pos, 1, field)?[0])
    }

    pub fn u16(&self, pos: usize, field: &str) -> FbResult<u16> {
        let b = self.slice(pos, 2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&self, pos: usize, field: &str) -> FbResult<u32> {
        let b = self.slice(pos, 4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&self, pos: usize, field: &str) -> FbResult<u64> {
        let b = self.slice(pos, 8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// The root table (the `u32` offset at the start of the buffer).
    pub fn root(&self) -> FbResult<Table<'a>> {
        let off = self.u32(0, "root")? as usize;
        Table::at(*self, off, "root")
    }

    /// The file identifier (bytes 4 to 8), if the buffer is long enough.
    pub fn identifier(&self) -> Option<&'a [u8]> {
        self.bytes.get(4..8)
    }
}

/// A table: its position and its vtable.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    buf: Buffer<'a>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

/// Follows a `u32` offset stored at `pos` (relative to `pos`).
fn follow(buf: Buffer<'_>, pos: usize, field: &str) -> FbResult<usize> {
    let off = buf.u32(pos, field)? as usize;
    pos.checked_add(off)
        .filter(|&p| p < buf.bytes.len())
        .ok_or_else(|| FbError::new(field, "offset points outside the file"))
}

impl<'a> Table<'a> {
    fn at(buf: Buffer<'a>, pos: usize, field: &str) -> FbResult<Self> {
        let soff = buf.u32(pos, field)? as i32 as i64;
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as usize >= buf.bytes.len() {
            return Err(FbError::new(field, "table's vtable lies outside the file"));
        }
        let vtable = vtable as usize;
        let vtable_len = buf.u16(vtable, field)? as usize;
        if vtable_len < 4 || !vtable_len.is_multiple_of(2) {
            return Err(FbError::new(
                field,
                format!("malformed vtable (size {vtable_len})"),
            ));
        }
        buf.slice(vtable, vtable_len, field)?;
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// The absolute position of field `index`, or `None` when the field is absent.
    fn field_pos(&self, index: usize, field: &str) -> FbResult<Option<usize>> {
        let entry = 4 + 2 * index;
        if entry + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = self.buf.u16(self.vtable + entry, field)? as usize;
        Ok((off != 0).then_some(self.pos + off))
    }

    pub fn u8(&self, index: usize, default: u8, field: &str) -> FbResult<u8> {
        match self.field_pos(index, field)? {
            Some(p) => self.buf.u8(p, field),
            None => Ok(default),
        }
    }

    pub fn i8(&self, index: usize, default: i8, field: &str) -> FbResult<i8> {
        Ok(self.u8(index, default as u8, field)? as i8)
    }

    pub fn u32(&self, index: usize, default: u32, field: &str) -> FbResult<u32> {
        match self.field_pos(index, field)? {
            Some(p) => self.buf.u32(p, field),
            None => Ok(default),
        }
    }

    pub fn i32(&self, index: usize, default: i32, field: &str) -> FbResult<i32> {
        Ok(self.u32(index, default as u32, field)? as i32)
    }

    pub fn u64(&self, index: usize, default: u64, field: &str) -> FbResult<u64> {
        match self.field_pos(index, field)? {
            Some(p) => self.buf.u64(p, field),
            None => Ok(default),
        }
    }

    /// A sub-table, or `None` when absent.
    pub fn table(&self, index: usize, field: &str) -> FbResult<Option<Table<'a>>> {
        match self.field_pos(index, field)? {
            Some(p) => Ok(Some(Table::at(
                self.buf,
                follow(self.buf, p, field)?,
                field,
            )?)),
            None => Ok(None),
        }
    }

    /// A vector's element count and the position of its first element, or `None` when absent.
    fn vector(
        &self,
        index: usize,
        elem_size: usize,
        field: &str,
    ) -> FbResult<Option<(usize, usize)>> {
        let Some(p) = self.field_pos(index, field)? else {
            return Ok(None);
        };
        let start = follow(self.buf, p, field)?;
        let len = self.buf.u32(start, field)? as usize;
        let data = start + 4;
        let bytes = len
            .checked_mul(elem_size)
            .ok_or_else(|| FbError::new(field, "vector length overflows"))?;
        self.buf.slice(data, bytes, field)?;
        Ok(Some((len, data)))
    }

    /// A vector of bytes (empty when absent).
    pub fn bytes(&self, index: usize, field: &str) -> FbResult<&'a [u8]> {
        match self.vector(index, 1, field)? {
            Some((len, data)) => self.buf.slice(data, len, field),
            None => Ok(&[]),
        }
    }

    /// A string (`None` when absent); invalid UTF-8 is replaced.
    pub fn string(&self, index: usize, field: &str) -> FbResult<Option<String>> {
        Ok(self.vector(index, 1, field)?.map(|(len, data)| {
            String::from_utf8_lossy(&self.buf.bytes[data..data + len]).into_owned()
        }))
    }

    /// A vector of `i32` (empty when absent).
    pub fn i32s(&self, index: usize, field: &str) -> FbResult<Vec<i32>> {
        let Some((len, data)) = self.vector(index, 4, field)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| Ok(self.buf.u32(data + 4 * i, field)? as i32))
            .collect()
    }

    /// A vector of `f32` (empty when absent).
    pub fn f32s(&self, index: usize, field: &str) -> FbResult<Vec<f32>> {
        let Some((len, data)) = self.vector(index, 4, field)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| Ok(f32::from_bits(self.buf.u32(data + 4 * i, field)?)))
            .collect()
    }

    /// A vector of `i64` (empty when absent).
    pub fn i64s(&self, index: usize, field: &str) -> FbResult<Vec<i64>> {
        let Some((len, data)) = self.vector(index, 8, field)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| Ok(self.buf.u64(data + 8 * i, field)? as i64))
            .collect()
    }

    /// A vector of tables (empty when absent).
    pub fn tables(&self, index: usize, field: &str) -> FbResult<Vec<Table<'a>>> {
        let Some((len, data)) = self.vector(index, 4, field)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| {
                let f = format!("{field}[{i}]");
                Table::at(self.buf, follow(self.buf, data + 4 * i, &f)?, &f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built buffer: root -> table with an i32 field (index 0) = 7 and a vector of i32
    /// (index 1) = [1, 2].
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&12u32.to_le_bytes()); // 0: root offset -> table at 12
        // 4: vtable: size 8, table size 12, field 0 at +4, field 1 at +8
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        // 12: table: soffset = 12 - 4 = 8
        b.extend_from_slice(&8i32.to_le_bytes());
        b.extend_from_slice(&7i32.to_le_bytes()); // 16: field 0
        b.extend_from_slice(&4u32.to_le_bytes()); // 20: field 1 -> vector at 24
        b.extend_from_slice(&2u32.to_le_bytes()); // 24: length
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&2i32.to_le_bytes());
        b
    }

    #[test]
    fn reads_fields_and_defaults() {
        let bytes = sample();
        let root = Buffer { bytes: &bytes }.root().unwrap();
        assert_eq!(root.i32(0, 0, "a").unwrap(), 7);
        assert_eq!(root.i32s(1, "b").unwrap(), vec![1, 2]);
        assert_eq!(root.i32(2, 42, "c").unwrap(), 42); // absent: default
        assert!(root.table(2, "d").unwrap().is_none());
    }

    #[test]
    fn truncated_and_corrupt_buffers_are_errors() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let buf = Buffer {
                bytes: &bytes[..cut],
            };
            // Never panics; either fails to find the root or fails reading the fields.
            if let Ok(root) = buf.root() {
                let _ = root.i32(0, 0, "a");
                let _ = root.i32s(1, "b");
            }
        }
        let mut bad = bytes.clone();
        bad[20] = 0xff; // vector offset far outside
        let root = Buffer { bytes: &bad }.root().unwrap();
        let e = root.i32s(1, "b").unwrap_err();
        assert_eq!(e.field, "b");
        let mut huge = bytes;
        huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes()); // vector length absurd
        let root = Buffer { bytes: &huge }.root().unwrap();
        assert!(root.i32s(1, "b").is_err());
    }
}

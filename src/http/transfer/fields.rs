//! Where a file's response fields are written: one list of fields, two ways out.
//!
//! hyper's responses carry their fields in a [`HeaderMap`]; the express lane writes its head's
//! bytes itself. Building a map only to read it back cost the lane a hash and an insert per
//! field, and a second pass to copy the values out (`docs/benchmarks.md`, the thirteenth
//! pass). So [`download::file_fields`](super::download::file_fields) writes through
//! [`Fields`], and each way out implements it: [`MapFields`] into a map (values sharing one
//! [`Values`] buffer), [`HeadFields`] straight into a head. Both refuse the same bytes, so a
//! field that one would leave out the other leaves out too.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, BytesMut};

use super::values::Values;

/// A buffer a field's value is written into. Positions are the buffer's own: a writer that
/// looks back at what it wrote notes `filled().len()` before it starts.
pub trait Out: BufMut {
    /// Everything in the buffer so far.
    fn filled(&self) -> &[u8];
    fn truncate(&mut self, len: usize);
}

impl Out for Vec<u8> {
    fn filled(&self) -> &[u8] {
        self
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

impl Out for BytesMut {
    fn filled(&self) -> &[u8] {
        self
    }
    fn truncate(&mut self, len: usize) {
        BytesMut::truncate(self, len);
    }
}

/// Where a response's fields go, in the order they are put.
pub trait Fields {
    type Out: Out;
    /// `name` with a value known in advance.
    fn fixed(&mut self, name: HeaderName, value: &'static str);
    /// `name` with the value `write` puts down, within `room` bytes (writing more costs an
    /// allocation, not correctness). `false`, and the field left out, if the value holds a
    /// byte a field value may not.
    fn written(
        &mut self,
        name: HeaderName,
        room: usize,
        write: impl FnOnce(&mut Self::Out),
    ) -> bool;
}

/// Fields into a map, their values views of one buffer.
pub struct MapFields<'a> {
    pub map: &'a mut HeaderMap,
    pub values: &'a mut Values,
}

impl Fields for MapFields<'_> {
    type Out = BytesMut;

    fn fixed(&mut self, name: HeaderName, value: &'static str) {
        self.map.insert(name, HeaderValue::from_static(value));
    }

    fn written(
        &mut self,
        name: HeaderName,
        room: usize,
        write: impl FnOnce(&mut BytesMut),
    ) -> bool {
        match self.values.value(room, write) {
            Some(value) => {
                self.map.insert(name, value);
                true
            }
            None => false,
        }
    }
}

/// Fields straight into a response head, as hyper writes them: `name: value\r\n`, the name in
/// lower case.
pub struct HeadFields<'a>(pub &'a mut Vec<u8>);

impl Fields for HeadFields<'_> {
    type Out = Vec<u8>;

    fn fixed(&mut self, name: HeaderName, value: &'static str) {
        self.line(&name, value.as_bytes());
    }

    fn written(&mut self, name: HeaderName, room: usize, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let start = self.0.len();
        self.0.reserve(name.as_str().len() + room + 4);
        self.0.extend_from_slice(name.as_str().as_bytes());
        self.0.extend_from_slice(b": ");
        let value_at = self.0.len();
        write(self.0);
        if !self.0[value_at..].iter().all(|&b| field_byte(b)) {
            self.0.truncate(start);
            return false;
        }
        self.0.extend_from_slice(b"\r\n");
        true
    }
}

impl HeadFields<'_> {
    fn line(&mut self, name: &HeaderName, value: &[u8]) {
        self.0.extend_from_slice(name.as_str().as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }
}

/// A byte `HeaderValue` takes: a tab, or visible ASCII, a space or any byte of 0x80 and up (not
/// DEL, not another control).
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    /// The two ways out agree on every byte: what the map takes, the head takes, and what one
    /// refuses the other refuses, leaving nothing behind.
    #[test]
    fn a_head_refuses_what_a_map_refuses() {
        for b in 0..=255u8 {
            let value = [b'a', b, b'z'];
            let mut map = HeaderMap::new();
            let mut values = Values::default();
            let in_map = MapFields {
                map: &mut map,
                values: &mut values,
            }
            .written(header::ETAG, 3, |out| out.put_slice(&value));
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            let before = head.clone();
            let in_head =
                HeadFields(&mut head).written(header::ETAG, 3, |out| out.put_slice(&value));
            assert_eq!(in_map, in_head, "byte {b:#04x}");
            assert_eq!(
                in_map,
                HeaderValue::from_bytes(&value).is_ok(),
                "byte {b:#04x}"
            );
            if in_head {
                let mut line = b"etag: ".to_vec();
                line.extend_from_slice(&value);
                line.extend_from_slice(b"\r\n");
                assert_eq!(&head[before.len()..], &line[..]);
            } else {
                assert_eq!(head, before);
            }
        }
    }
}

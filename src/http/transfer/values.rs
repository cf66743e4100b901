//! Header values written into one buffer instead of one allocation each.
//!
//! `HeaderValue::from_bytes` copies its bytes into an allocation of their own: a download's
//! `Content-Disposition`, `Last-Modified` and `Content-Length` cost three, and the disposition
//! a fourth for the text it is built in. Written here they share one buffer: each value is a
//! view of it. The express lane keeps one per connection, and once a response's map is cleared
//! no view is left, so the next response's values go into the same memory (`BytesMut` takes
//! its buffer back when it holds the only reference): a keep-alive connection allocates for
//! its first download only. A response served by hyper takes a buffer of its own, reserved
//! once for all its values.

use axum::http::HeaderValue;
use bytes::BytesMut;

#[derive(Default)]
pub struct Values(BytesMut);

impl Values {
    /// Makes room for `total` bytes of values at once, so a response's values share one
    /// buffer. Asked for before each response, it costs nothing once the connection's buffer
    /// is that large: the views a cleared map held are gone, and the whole buffer is free.
    pub fn reserve(&mut self, total: usize) {
        self.0.reserve(total);
    }

    /// The value that `write` puts down, in at most `room` bytes (it may write more; that
    /// costs an allocation, not correctness). `None` if it wrote a byte a header value may not
    /// hold.
    pub fn value(&mut self, room: usize, write: impl FnOnce(&mut BytesMut)) -> Option<HeaderValue> {
        self.0.reserve(room);
        write(&mut self.0);
        // `from_maybe_shared` keeps the `Bytes` it is given (a view, no copy); it checks the
        // bytes as `from_bytes` does.
        HeaderValue::from_maybe_shared(self.0.split().freeze()).ok()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    #[test]
    fn values_are_checked_as_from_bytes_checks_them() {
        let mut values = Values::default();
        let v = values.value(8, |b| b.put_slice(b"4096")).unwrap();
        assert_eq!(v, "4096");
        assert!(values.value(8, |b| b.put_slice(b"a\r\nb")).is_none());
        // A refused value leaves nothing behind for the next one.
        let v = values.value(8, |b| b.put_slice(b"bytes")).unwrap();
        assert_eq!(v, "bytes");
    }

    #[test]
    fn a_value_that_outgrows_its_room_is_still_whole() {
        let mut values = Values::default();
        let long = "x".repeat(1000);
        let v = values.value(4, |b| b.put_slice(long.as_bytes())).unwrap();
        assert_eq!(v.as_bytes(), long.as_bytes());
    }

    #[test]
    fn earlier_values_survive_later_ones() {
        let mut values = Values::default();
        let first = values.value(4, |b| b.put_slice(b"one")).unwrap();
        let held: Vec<_> = (0..100)
            .map(|i| {
                values
                    .value(4, |b| b.put_slice(format!("v{i}").as_bytes()))
                    .unwrap()
            })
            .collect();
        assert_eq!(first, "one");
        for (i, v) in held.iter().enumerate() {
            assert_eq!(v.as_bytes(), format!("v{i}").as_bytes());
        }
    }
}

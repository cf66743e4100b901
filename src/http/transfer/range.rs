//! What a `Range` header asks of a file of a given size.
//!
//! Syntax comes from `http-range-header`; the decision is ours, because burnlink's rules are
//! narrower than the RFC's options: one satisfiable range gets 206, several get the whole file,
//! a header we cannot read is ignored (RFC 9110 §14.2 allows that), and only a well-formed range
//! that lies wholly past the end gets 416.

use std::ops::RangeInclusive;

use http_range_header::{EndPosition, StartPosition, parse_range_header};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Full,
    Partial(RangeInclusive<u64>),
    Unsatisfiable,
}

pub fn decide(header: Option<&str>, size: u64) -> Decision {
    let Some(header) = header else {
        return Decision::Full;
    };
    let Ok(parsed) = parse_range_header(header) else {
        return Decision::Full;
    };
    let [only] = parsed.ranges.as_slice() else {
        return Decision::Full;
    };
    if size == 0 {
        return Decision::Unsatisfiable;
    }
    let last = size - 1;
    let (start, end) = match (only.start, only.end) {
        (StartPosition::Index(start), end) => {
            let end = match end {
                EndPosition::Index(e) => e.min(last),
                EndPosition::LastByte => last,
            };
            if start > last {
                return Decision::Unsatisfiable;
            }
            if end < start {
                // `bytes=5-3` is invalid syntax; ignore the header.
                return Decision::Full;
            }
            (start, end)
        }
        (StartPosition::FromLast(n), _) => {
            if n == 0 {
                return Decision::Unsatisfiable;
            }
            (size.saturating_sub(n), last)
        }
    };
    Decision::Partial(start..=end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cases() {
        assert_eq!(decide(None, 10), Decision::Full);
        assert_eq!(decide(Some("bytes=0-4"), 10), Decision::Partial(0..=4));
        assert_eq!(decide(Some("bytes=5-"), 10), Decision::Partial(5..=9));
        assert_eq!(decide(Some("bytes=5-100"), 10), Decision::Partial(5..=9));
        assert_eq!(decide(Some("bytes=-3"), 10), Decision::Partial(7..=9));
        assert_eq!(decide(Some("bytes=-100"), 10), Decision::Partial(0..=9));
        assert_eq!(decide(Some("bytes=10-"), 10), Decision::Unsatisfiable);
        assert_eq!(decide(Some("bytes=0-"), 0), Decision::Unsatisfiable);
        assert_eq!(decide(Some("bytes=0-1,4-5"), 10), Decision::Full);
        assert_eq!(decide(Some("bytes=5-3"), 10), Decision::Full);
        assert_eq!(decide(Some("items=0-1"), 10), Decision::Full);
        assert_eq!(decide(Some("garbage"), 10), Decision::Full);
    }

    proptest! {
        #[test]
        fn partial_ranges_are_always_inside_the_file(header in "\\PC{0,40}", size in 0u64..10_000) {
            if let Decision::Partial(r) = decide(Some(&header), size) {
                prop_assert!(r.start() <= r.end());
                prop_assert!(*r.end() < size);
            }
        }

        #[test]
        fn generated_ranges(start in 0u64..200, len in 0u64..200, size in 0u64..150) {
            let header = format!("bytes={start}-{}", start + len);
            match decide(Some(&header), size) {
                Decision::Partial(r) => {
                    prop_assert_eq!(*r.start(), start);
                    prop_assert_eq!(*r.end(), (start + len).min(size - 1));
                }
                Decision::Unsatisfiable => prop_assert!(start >= size),
                Decision::Full => prop_assert!(false, "well-formed single range"),
            }
        }
    }
}

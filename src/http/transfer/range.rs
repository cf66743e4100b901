//! What a `Range` header asks of a file of a given size, by RFC 9110 §14.
//!
//! Parsed here, to the letter of the RFC's grammar, because the decision hangs on details a
//! general parser smooths over (`bytes=-0` is a well-formed suffix range that no file can
//! satisfy, not a header to ignore). burnlink's rules: a header that is not a well-formed
//! `bytes` range set is ignored (§14.2 allows that), as is one whose range is invalid
//! (`5-3`); one satisfiable range gets 206; several ranges get the whole file with 200 unless
//! none of them can be satisfied; and a range set nothing in the file satisfies is 416.

use std::ops::RangeInclusive;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Full,
    Partial(RangeInclusive<u64>),
    Unsatisfiable,
}

/// One range-spec of a `bytes` range set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-[last]`; `last` absent means to the end.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl Spec {
    /// The bytes this spec selects of a file of `size`, or `None` if it is unsatisfiable
    /// (§14.1.2: an int-range is satisfiable if its first position is inside the file, a
    /// suffix-range if its length is not zero).
    fn select(self, size: u64) -> Option<RangeInclusive<u64>> {
        let last = size.checked_sub(1)?;
        match self {
            Spec::From { first, .. } if first > last => None,
            Spec::From { first, last: end } => Some(first..=end.unwrap_or(last).min(last)),
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some(size.saturating_sub(n)..=last),
        }
    }
}

pub fn decide(header: Option<&str>, size: u64) -> Decision {
    let Some(specs) = header.and_then(parse) else {
        return Decision::Full;
    };
    let mut satisfiable = specs.iter().filter_map(|s| s.select(size));
    match (specs.len(), satisfiable.next()) {
        (_, None) => Decision::Unsatisfiable,
        (1, Some(range)) => Decision::Partial(range),
        _ => Decision::Full,
    }
}

/// `bytes=` and a comma-separated list of range-specs (empty list elements allowed, §5.6.1),
/// or `None` when the header is not that, or holds an invalid range (`last < first`).
fn parse(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim_end().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if item.is_empty() {
            continue;
        }
        let (first, last) = item.split_once('-')?;
        let spec = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From { first, last }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// 1*DIGIT; a number too large for 64 bits is as good as infinite here.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
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
        // A suffix of nothing is well-formed and unsatisfiable: 416, never the whole file.
        assert_eq!(decide(Some("bytes=-0"), 10), Decision::Unsatisfiable);
        assert_eq!(decide(Some("bytes=-0"), 0), Decision::Unsatisfiable);
        assert_eq!(decide(Some("bytes=-0,-0"), 10), Decision::Unsatisfiable);
        assert_eq!(decide(Some("bytes=-0, 3-4"), 10), Decision::Full);
        assert_eq!(
            decide(Some("bytes=10-, 20-30"), 10),
            Decision::Unsatisfiable
        );
        assert_eq!(decide(Some("Bytes = 0-0"), 10), Decision::Partial(0..=0));
        assert_eq!(decide(Some("bytes=0-0"), 10), Decision::Partial(0..=0));
        assert_eq!(decide(Some("bytes=,0-0,"), 10), Decision::Partial(0..=0));
        assert_eq!(
            decide(Some("bytes=0-99999999999999999999999"), 10),
            Decision::Partial(0..=9)
        );
        assert_eq!(
            decide(Some("bytes=99999999999999999999999-"), 10),
            Decision::Unsatisfiable
        );
        for bad in [
            "bytes=",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=1",
            "bytes=--1",
        ] {
            assert_eq!(decide(Some(bad), 10), Decision::Full, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn partial_ranges_are_always_inside_the_file(header in "\\PC{0,40}", size in 0u64..10_000) {
            if let Decision::Partial(r) = decide(Some(&header), size) {
                prop_assert!(r.start() <= r.end());
                prop_assert!(*r.end() < size);
            }
        }

        /// Every single range against RFC 9110 §14.1.2's satisfiability rules.
        #[test]
        fn single_ranges_follow_the_rfc(
            first in proptest::option::of(0u64..300),
            last in proptest::option::of(0u64..300),
            size in 0u64..200,
        ) {
            let header = match (first, last) {
                (Some(f), l) => format!("bytes={f}-{}", l.map(|l| l.to_string()).unwrap_or_default()),
                (None, Some(n)) => format!("bytes=-{n}"),
                (None, None) => return Ok(()),
            };
            let got = decide(Some(&header), size);
            let want = match (first, last) {
                (Some(f), Some(l)) if l < f => Decision::Full,
                (Some(f), _) if f >= size => Decision::Unsatisfiable,
                (Some(f), l) => Decision::Partial(f..=l.unwrap_or(u64::MAX).min(size - 1)),
                (None, Some(0)) => Decision::Unsatisfiable,
                (None, Some(_)) if size == 0 => Decision::Unsatisfiable,
                (None, Some(n)) => Decision::Partial(size.saturating_sub(n)..=size - 1),
                (None, None) => unreachable!(),
            };
            prop_assert_eq!(got, want, "{}", header);
        }

        /// Several ranges: the whole file, unless none can be satisfied.
        #[test]
        fn several_ranges_are_the_whole_file_or_416(
            firsts in proptest::collection::vec(0u64..300, 2..5),
            size in 0u64..200,
        ) {
            let header = format!(
                "bytes={}",
                firsts.iter().map(|f| format!("{f}-")).collect::<Vec<_>>().join(",")
            );
            let want = if firsts.iter().all(|f| *f >= size) {
                Decision::Unsatisfiable
            } else {
                Decision::Full
            };
            prop_assert_eq!(decide(Some(&header), size), want);
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

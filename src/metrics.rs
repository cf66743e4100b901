//! Prometheus metrics: what `/metrics` shows and the few hooks that feed it.
//!
//! The `metrics` facade with `metrics-exporter-prometheus` (built without its own HTTP
//! listener) renders the counters and gauges. What every request writes (the latency
//! histogram, the transfer counters, the active-transfer gauge) is kept here instead, in
//! per-thread slots summed at scrape. The exporter's handles are shared atomics, and its
//! histogram appends each sample, with a clock reading, to a list shared by every thread, so
//! both event loops' cores wrote the same cache lines on every request (`docs/benchmarks.md`,
//! the fifteenth pass). At scrape the sums are handed to the exporter, and the histogram is
//! written beside the exporter's text in the same format.
//!
//! The recorder is installed once per process by `burnlink serve`; without it (unit tests, the
//! CLI) the per-thread meters still count, and nothing shows them.
//!
//! Labels are low-cardinality on purpose: direction, outcome, method, route template and
//! status. A token, a path, a session or a client address never becomes a label, so
//! `/metrics` needs no authentication and cannot leak a link (see `docs/operations.md`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::sharded::Sharded;

pub const LINKS_MINTED: &str = "burnlink_links_minted_total";
pub const TRANSFERS: &str = "burnlink_transfers_total";
pub const TRANSFER_BYTES: &str = "burnlink_transfer_bytes_total";
pub const ACTIVE_TRANSFERS: &str = "burnlink_active_transfers";
pub const LEDGER_ENTRIES: &str = "burnlink_ledger_entries";
pub const LEDGER_UNREPLICATED: &str = "burnlink_ledger_unreplicated_total";
pub const REQUEST_DURATION: &str = "burnlink_http_request_duration_seconds";
pub const OPEN_CONNECTIONS: &str = "burnlink_open_connections";
pub const CONNECTIONS_MOVED: &str = "burnlink_connections_moved_total";

const REQUEST_DURATION_HELP: &str =
    "Time until the response head is ready (a download's body streams after it)";

/// Upper bounds of the latency histogram, in seconds as shown: from a cached-token answer
/// (well under a millisecond) to a slow upload's fsync and rename.
const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The same bounds in nanoseconds, which a sample is compared against.
const DURATION_BOUNDS_NS: [u64; 15] = {
    let mut ns = [0; 15];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (DURATION_BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    ns
};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's meters, which every hook below writes.
static METERS: LazyLock<Meters> = LazyLock::new(Meters::default);

/// Installs the process-wide recorder (once).
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        return;
    }
    describe();
    let _ = HANDLE.set(handle);
}

fn describe() {
    metrics::describe_counter!(LINKS_MINTED, "Links minted through this server");
    metrics::describe_counter!(
        TRANSFERS,
        "Transfers that took a link's lease, by how they ended"
    );
    metrics::describe_counter!(
        TRANSFER_BYTES,
        metrics::Unit::Bytes,
        "Bytes sent (downloads) or received (uploads), whatever the outcome"
    );
    metrics::describe_gauge!(ACTIVE_TRANSFERS, "Transfers holding a lease right now");
    metrics::describe_gauge!(LEDGER_ENTRIES, "Entries in the link ledger, read at scrape");
    metrics::describe_gauge!(
        OPEN_CONNECTIONS,
        "Client connections open now, by the event loop that serves them"
    );
    metrics::describe_counter!(
        CONNECTIONS_MOVED,
        "Connections moved between two requests to the event loop on the CPU their packets arrive on, by the loop they moved to"
    );
    metrics::describe_counter!(
        LEDGER_UNREPLICATED,
        "Burns that fewer Redis replicas than BURNLINK_LEDGER_REPLICAS acknowledged in time"
    );
}

/// One burn that fewer replicas than `BURNLINK_LEDGER_REPLICAS` acknowledged in time.
pub fn ledger_unreplicated() {
    metrics::counter!(LEDGER_UNREPLICATED).increment(1);
}

/// Shows `burnlink_ledger_unreplicated_total` at 0 from the start when replicas are asked for.
pub fn expose_ledger_unreplicated() {
    metrics::counter!(LEDGER_UNREPLICATED).absolute(0);
}

/// The Prometheus text of everything recorded so far (empty before [`install`]).
pub fn render() -> String {
    HANDLE.get().map(|h| METERS.render(h)).unwrap_or_default()
}

/// The open connections of one event loop (`loop` is its number, or `shared` for the shared
/// runtime), and the connections moved to it. A pinned loop takes a plain-HTTP download
/// connection from another loop when the connection's requests arrive on its CPU; any other
/// connection stays on the loop that accepted it until it closes, so operators can see when a
/// few long-lived connections (a proxy's keep-alive pool) left a loop idle
/// (docs/operations.md). Both are shown at 0 from the loop's start, so every loop has its
/// series. Each loop writes only its own, once per connection, so they stay the exporter's.
pub fn loop_connections(label: String) -> (metrics::Gauge, metrics::Counter) {
    let gauge = metrics::gauge!(OPEN_CONNECTIONS, "loop" => label.clone());
    gauge.set(0.0);
    let moved = metrics::counter!(CONNECTIONS_MOVED, "loop" => label);
    moved.absolute(0);
    (gauge, moved)
}

/// Sets the ledger-size gauge, read fresh at each scrape.
pub fn ledger_entries(n: u64) {
    metrics::gauge!(LEDGER_ENTRIES).set(n as f64);
}

/// One request's latency, by method, route template and status.
pub fn request_finished(method: &'static str, route: &str, status: u16, took: Duration) {
    thread_local! {
        static SEEN: Seen<(&'static str, Box<str>, u16), Sharded<Tally>> = const { Seen::new() };
    }
    SEEN.with(|seen| {
        seen.find(
            |(m, r, s)| *m == method && **r == *route && *s == status,
            || METERS.durations.get((method, route.into(), status)),
        )
    })
    .mine()
    .record(took);
}

pub fn link_minted(direction: &'static str) {
    metrics::counter!(LINKS_MINTED, "direction" => direction).increment(1);
}

/// One settled transfer: counted by outcome, and its bytes.
pub fn transfer_settled(direction: &'static str, outcome: &'static str, bytes: u64) {
    thread_local! {
        static SEEN: Seen<(&'static str, &'static str), Sharded<Settled>> = const { Seen::new() };
    }
    let settled = SEEN
        .with(|seen| {
            seen.find(
                |(d, o)| *d == direction && *o == outcome,
                || METERS.settled.get((direction, outcome)),
            )
        })
        .mine();
    settled.count.fetch_add(1, Relaxed);
    settled.bytes.fetch_add(bytes, Relaxed);
}

/// Counts one transfer in `burnlink_active_transfers` for as long as it lives; held by the
/// transfer's lease, so every way a lease ends also ends the count.
#[derive(Debug)]
pub struct ActiveTransfer(());

impl ActiveTransfer {
    pub fn start() -> Self {
        METERS.active.mine().fetch_add(1, Relaxed);
        ActiveTransfer(())
    }
}

impl Drop for ActiveTransfer {
    fn drop(&mut self) {
        // Possibly another thread's slot than the one `start` counted in: only the sum means
        // anything, and it is right.
        METERS.active.mine().fetch_sub(1, Relaxed);
    }
}

/// The meters every request writes, each kept per thread.
#[derive(Default)]
struct Meters {
    durations: Family<(&'static str, Box<str>, u16), Sharded<Tally>>,
    settled: Family<(&'static str, &'static str), Sharded<Settled>>,
    active: Sharded<AtomicI64>,
}

impl Meters {
    /// Hands the sums to the exporter's recorder (the one in scope), and writes its text with
    /// the latency histogram after it.
    fn render(&self, exporter: &PrometheusHandle) -> String {
        let mut bytes: Vec<(&'static str, u64)> = Vec::new();
        for ((direction, outcome), settled) in self.settled.all() {
            let (count, sum) = settled.all().fold((0, 0), |(c, b), s| {
                (c + s.count.load(Relaxed), b + s.bytes.load(Relaxed))
            });
            metrics::counter!(TRANSFERS, "direction" => direction, "outcome" => outcome)
                .absolute(count);
            match bytes.iter_mut().find(|(d, _)| *d == direction) {
                Some((_, b)) => *b += sum,
                None => bytes.push((direction, sum)),
            }
        }
        for (direction, sum) in bytes {
            metrics::counter!(TRANSFER_BYTES, "direction" => direction).absolute(sum);
        }
        let active: i64 = self.active.all().map(|s| s.load(Relaxed)).sum();
        metrics::gauge!(ACTIVE_TRANSFERS).set(active as f64);

        let mut text = exporter.render();
        let mut durations = self.durations.all();
        durations.sort_by(|a, b| a.0.cmp(&b.0));
        if durations.is_empty() {
            return text;
        }
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        let _ = writeln!(text, "# HELP {REQUEST_DURATION} {REQUEST_DURATION_HELP}");
        let _ = writeln!(text, "# TYPE {REQUEST_DURATION} histogram");
        for ((method, route, status), tally) in durations {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{status}\"",
                escape(method),
                escape(&route)
            );
            let mut buckets = [0u64; DURATION_BUCKETS.len() + 1];
            let mut nanos = 0u64;
            for slot in tally.all() {
                for (sum, b) in buckets.iter_mut().zip(&slot.buckets) {
                    *sum += b.load(Relaxed);
                }
                nanos = nanos.saturating_add(slot.nanos.load(Relaxed));
            }
            let mut below = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(buckets) {
                below += n;
                let _ = writeln!(
                    text,
                    "{REQUEST_DURATION}_bucket{{{labels},le=\"{bound}\"}} {below}"
                );
            }
            let count = below + buckets[DURATION_BUCKETS.len()];
            let _ = writeln!(
                text,
                "{REQUEST_DURATION}_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let seconds = nanos as f64 / 1e9;
            let _ = writeln!(text, "{REQUEST_DURATION}_sum{{{labels}}} {seconds}");
            let _ = writeln!(text, "{REQUEST_DURATION}_count{{{labels}}} {count}");
        }
        text.push('\n');
        text
    }
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// The latency samples of one label set in one slot: how many fell in each bucket (the last
/// is past every bound) and their sum. Cumulated only at scrape.
#[derive(Default)]
struct Tally {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    nanos: AtomicU64,
}

impl Tally {
    fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let at = DURATION_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[at].fetch_add(1, Relaxed);
        self.nanos.fetch_add(ns, Relaxed);
    }
}

/// One (direction, outcome)'s transfers and their bytes, in one slot.
#[derive(Default)]
struct Settled {
    count: AtomicU64,
    bytes: AtomicU64,
}

/// The meters of each label set seen, made the first time and kept for the process's life:
/// the label sets are the few routes, methods, statuses and outcomes there are.
struct Family<K, V: 'static> {
    members: Mutex<Vec<(K, &'static V)>>,
}

impl<K, V: 'static> Default for Family<K, V> {
    fn default() -> Self {
        Family {
            members: Mutex::new(Vec::new()),
        }
    }
}

impl<K: PartialEq + Clone, V: Default + 'static> Family<K, V> {
    fn get(&self, key: K) -> (K, &'static V) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, v)) = members.iter().find(|(k, _)| *k == key) {
            return (k.clone(), *v);
        }
        let v: &'static V = Box::leak(Box::default());
        members.push((key.clone(), v));
        (key, v)
    }

    fn all(&self) -> Vec<(K, &'static V)> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The meters one thread has used, so a request finds its label set's meter without the
/// family's lock. A scan, because there are few.
struct Seen<K, V: 'static> {
    seen: std::cell::RefCell<Vec<(K, &'static V)>>,
}

impl<K, V> Seen<K, V> {
    const fn new() -> Self {
        Seen {
            seen: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// The meter whose key `matches`, taken from the family by `fetch` the first time.
    fn find(
        &self,
        matches: impl Fn(&K) -> bool,
        fetch: impl FnOnce() -> (K, &'static V),
    ) -> &'static V {
        let mut seen = self.seen.borrow_mut();
        if let Some((_, v)) = seen.iter().find(|(k, _)| matches(k)) {
            return v;
        }
        let (k, v) = fetch();
        seen.push((k, v));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_render_as_prometheus_text_with_low_cardinality_labels() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let meters = Meters::default();
        let text = metrics::with_local_recorder(&recorder, || {
            link_minted("download");
            link_minted("download");
            // From two threads, as from two event loops, for the same label sets.
            std::thread::scope(|s| {
                for bytes in [1234, 66] {
                    let meters = &meters;
                    s.spawn(move || {
                        let (_, settled) = meters.settled.get(("upload", "completed"));
                        settled.mine().count.fetch_add(1, Relaxed);
                        settled.mine().bytes.fetch_add(bytes, Relaxed);
                        meters.active.mine().fetch_add(1, Relaxed);
                        let (_, tally) = meters.durations.get(("GET", "/healthz".into(), 200));
                        tally.mine().record(Duration::from_micros(2000));
                        tally.mine().record(Duration::from_millis(40));
                    });
                }
            });
            meters.active.mine().fetch_sub(1, Relaxed);
            meters.render(&handle)
        });
        assert!(
            text.contains("burnlink_links_minted_total{direction=\"download\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("burnlink_transfers_total{direction=\"upload\",outcome=\"completed\"} 2"),
            "{text}"
        );
        assert!(text.contains("burnlink_transfer_bytes_total{direction=\"upload\"} 1300"));
        assert!(text.contains("burnlink_active_transfers 1"), "{text}");
        assert!(text.contains("# TYPE burnlink_http_request_duration_seconds histogram\n"));
        let series = "burnlink_http_request_duration_seconds";
        let labels = "method=\"GET\",route=\"/healthz\",status=\"200\"";
        for (le, n) in [
            ("0.001", 0),
            ("0.0025", 2),
            ("0.025", 2),
            ("0.05", 4),
            ("+Inf", 4),
        ] {
            let line = format!("{series}_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(
            text.contains(&format!("{series}_sum{{{labels}}} 0.084\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{series}_count{{{labels}}} 4\n")),
            "{text}"
        );
    }

    #[test]
    fn a_sample_on_a_bound_counts_below_it() {
        let tally = Tally::default();
        tally.record(Duration::from_micros(500));
        tally.record(Duration::from_nanos(500_001));
        tally.record(Duration::from_secs(31));
        let counts: Vec<u64> = tally.buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!((counts[0], counts[1], counts[15]), (1, 1, 1), "{counts:?}");
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn label_values_are_quoted_as_the_text_format_says() {
        assert_eq!(escape("/transfer/{token}"), "/transfer/{token}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

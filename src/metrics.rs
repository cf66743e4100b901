//! Prometheus metrics: what `/metrics` shows and the few hooks that feed it.
//!
//! The `metrics` facade with `metrics-exporter-prometheus` (built without its own HTTP
//! listener) renders the text format, so nothing here formats exposition lines by hand. The
//! recorder is installed once per process by `burnlink serve`; without it (unit tests, the
//! CLI) every hook is a no-op.
//!
//! Labels are low-cardinality on purpose: direction, outcome, method, route template and
//! status. A token, a path, a session or a client address never becomes a label, so
//! `/metrics` needs no authentication and cannot leak a link (see `docs/operations.md`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const LINKS_MINTED: &str = "burnlink_links_minted_total";
pub const TRANSFERS: &str = "burnlink_transfers_total";
pub const TRANSFER_BYTES: &str = "burnlink_transfer_bytes_total";
pub const ACTIVE_TRANSFERS: &str = "burnlink_active_transfers";
pub const LEDGER_ENTRIES: &str = "burnlink_ledger_entries";
pub const LEDGER_UNREPLICATED: &str = "burnlink_ledger_unreplicated_total";
pub const REQUEST_DURATION: &str = "burnlink_http_request_duration_seconds";
pub const OPEN_CONNECTIONS: &str = "burnlink_open_connections";
pub const CONNECTIONS_MOVED: &str = "burnlink_connections_moved_total";

/// Upper bounds of the latency histogram: from a cached-token answer (well under a
/// millisecond) to a slow upload's fsync and rename.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so memory
/// stays bounded under load whether or not anyone scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and its upkeep task.
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        return;
    }
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
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
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time until the response head is ready (a download's body streams after it)"
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
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}

/// The open connections of one event loop (`loop` is its number, or `shared` for the shared
/// runtime), and the connections moved to it. A pinned loop takes a plain-HTTP download
/// connection from another loop when the connection's requests arrive on its CPU; any other
/// connection stays on the loop that accepted it until it closes, so operators can see when a
/// few long-lived connections (a proxy's keep-alive pool) left a loop idle
/// (docs/operations.md). Both are shown at 0 from the loop's start, so every loop has its
/// series.
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
pub fn request_finished(method: &str, route: &str, status: u16, seconds: f64) {
    if HANDLE.get().is_none() {
        // No global recorder (unit tests, the CLI): whatever recorder is in scope.
        let status = status.to_string();
        metrics::histogram!(
            REQUEST_DURATION,
            "method" => method.to_owned(),
            "route" => route.to_owned(),
            "status" => status,
        )
        .record(seconds);
        return;
    }
    thread_local! {
        static HANDLES: Handles<(Box<str>, Box<str>, u16), metrics::Histogram> = const { Handles::new() };
    }
    HANDLES.with(|handles| {
        handles.with(
            |(m, r, s)| **m == *method && **r == *route && *s == status,
            || {
                let handle = metrics::histogram!(
                    REQUEST_DURATION,
                    "method" => method.to_owned(),
                    "route" => route.to_owned(),
                    "status" => status.to_string(),
                );
                ((method.into(), route.into(), status), handle)
            },
            |histogram| histogram.record(seconds),
        )
    });
}

pub fn link_minted(direction: &'static str) {
    metrics::counter!(LINKS_MINTED, "direction" => direction).increment(1);
}

/// One settled transfer: counted by outcome, and its bytes.
pub fn transfer_settled(direction: &'static str, outcome: &'static str, bytes: u64) {
    if HANDLE.get().is_none() {
        metrics::counter!(TRANSFERS, "direction" => direction, "outcome" => outcome).increment(1);
        metrics::counter!(TRANSFER_BYTES, "direction" => direction).increment(bytes);
        return;
    }
    thread_local! {
        static HANDLES: Handles<(&'static str, &'static str), (metrics::Counter, metrics::Counter)> =
            const { Handles::new() };
    }
    HANDLES.with(|handles| {
        handles.with(
            |(d, o)| *d == direction && *o == outcome,
            || {
                let count =
                    metrics::counter!(TRANSFERS, "direction" => direction, "outcome" => outcome);
                let sum = metrics::counter!(TRANSFER_BYTES, "direction" => direction);
                ((direction, outcome), (count, sum))
            },
            |(count, sum)| {
                count.increment(1);
                sum.increment(bytes);
            },
        )
    });
}

/// The global recorder's handles for the label sets one thread has seen. Looking a metric up
/// by its labels builds its key (the label strings, a vector) and hashes it on every call; a
/// request pays that a dozen times, so each label set is looked up once per thread and its
/// handle kept. Per thread, not shared: a shared list's lock and the handle's reference count
/// would be written on every use, from both event loops' cores (`docs/benchmarks.md`, the
/// thirteenth pass). The sets are the few routes, methods, statuses and outcomes there are,
/// so a scan finds them.
struct Handles<K, H> {
    seen: std::cell::RefCell<Vec<(K, H)>>,
}

impl<K, H> Handles<K, H> {
    const fn new() -> Self {
        Handles {
            seen: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// `use_it` on the handle whose key `matches`, registered by `register` the first time.
    fn with<R>(
        &self,
        matches: impl Fn(&K) -> bool,
        register: impl FnOnce() -> (K, H),
        use_it: impl FnOnce(&H) -> R,
    ) -> R {
        let mut seen = self.seen.borrow_mut();
        let at = match seen.iter().position(|(k, _)| matches(k)) {
            Some(at) => at,
            None => {
                seen.push(register());
                seen.len() - 1
            }
        };
        use_it(&seen[at].1)
    }
}

/// Counts one transfer in `burnlink_active_transfers` for as long as it lives; held by the
/// transfer's lease, so every way a lease ends also ends the count.
#[derive(Debug)]
pub struct ActiveTransfer(());

impl ActiveTransfer {
    pub fn start() -> Self {
        active_transfers().increment(1.0);
        ActiveTransfer(())
    }
}

impl Drop for ActiveTransfer {
    fn drop(&mut self) {
        active_transfers().decrement(1.0);
    }
}

/// The gauge, looked up once for the global recorder and used by reference: a clone per use
/// would write its reference count.
fn active_transfers() -> std::borrow::Cow<'static, metrics::Gauge> {
    if HANDLE.get().is_none() {
        return std::borrow::Cow::Owned(metrics::gauge!(ACTIVE_TRANSFERS));
    }
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    std::borrow::Cow::Borrowed(GAUGE.get_or_init(|| metrics::gauge!(ACTIVE_TRANSFERS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_render_as_prometheus_text_with_low_cardinality_labels() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            link_minted("download");
            link_minted("download");
            transfer_settled("upload", "completed", 1234);
            let active = ActiveTransfer::start();
            let other = ActiveTransfer::start();
            drop(active);
            metrics::histogram!(REQUEST_DURATION, "method" => "GET", "route" => "/healthz", "status" => "200").record(0.002);
            drop(other);
        });
        let text = handle.render();
        assert!(
            text.contains("burnlink_links_minted_total{direction=\"download\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("burnlink_transfers_total{direction=\"upload\",outcome=\"completed\"} 1")
        );
        assert!(text.contains("burnlink_transfer_bytes_total{direction=\"upload\"} 1234"));
        assert!(text.contains("burnlink_active_transfers 0"), "{text}");
        assert!(text.contains(
            "burnlink_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",status=\"200\",le=\"0.0025\"} 1"
        ), "{text}");
    }
}

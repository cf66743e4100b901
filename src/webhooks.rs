//! Webhooks: `link.transferred` after each completed transfer and `link.revoked`, POSTed to
//! `BURNLINK_WEBHOOK_URL` and signed per the Standard Webhooks specification.
//!
//! Emitting never waits and never fails: [`Webhooks::emit`] hands the event to a queue and
//! returns. Delivery runs in the background with retries (exponential backoff with jitter, for
//! at most [`RETRY_FOR`]), the same `webhook-id` on every attempt, and a fresh
//! `webhook-timestamp` and signature per attempt (receivers refuse stale timestamps).
//!
//! Two queues, following the ledger:
//! - in memory (one replica): a bounded channel; when it is full an event is dropped, counted
//!   and logged, so a slow receiver cannot exhaust memory;
//! - in Redis (several replicas): a stream, `burnlink:{webhooks}:events` (hash-tagged, one
//!   key), read through one consumer group by every replica. A replica keeps the entries it
//!   is delivering fresh (`XCLAIM … JUSTID` before each attempt); entries a dead replica left
//!   pending go idle and another replica takes them over (`XAUTOCLAIM`) and delivers them with
//!   the same id. An entry is acknowledged and deleted once delivered or given up on. The
//!   stream is bounded too ([`REDIS_MAX_LEN`]; beyond it, events are dropped and counted).
//!
//! The event carries the link's short id, never its token; neither the secret nor the URL is
//! ever logged. Free of HTTP server types: events go out through the one outbound client
//! ([`crate::http_client`]), so an `https://` receiver works, trusting the system's roots plus
//! `SSL_CERT_FILE`. Credentials in the URL (`https://user:pw@host/…`) are sent as HTTP Basic
//! authentication.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ledger::redis::RedisHandle;
use base64ct::{Base64, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::token::{Claims, hex, unix_now};

/// Events waiting in memory at most (about 1 KiB each).
pub const MEMORY_QUEUE: usize = 10_000;
/// Entries the Redis stream holds at most.
pub const REDIS_MAX_LEN: u64 = 100_000;
/// Deliveries running at once per replica.
const IN_FLIGHT: usize = 32;
/// First retry delay; doubled per failure up to [`BACKOFF_CAP`], each with ±50 % jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How long an event is retried before it is given up (counted and logged).
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// One attempt's bound (connect, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pending Redis entry idle this long belongs to a replica that died (a live one touches its
/// entries at least every `BACKOFF_CAP * 1.5 + ATTEMPT_TIMEOUT`, 12.5 s).
const CLAIM_IDLE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(250);
const RECLAIM_EVERY: Duration = Duration::from_secs(3);

const STREAM: &str = crate::ledger::redis::WEBHOOK_STREAM;
const GROUP: &str = "burnlink";

pub const SENT: &str = "burnlink_webhook_events_sent_total";
pub const FAILED: &str = "burnlink_webhook_events_failed_total";
pub const RETRIED: &str = "burnlink_webhook_retries_total";
pub const DROPPED: &str = "burnlink_webhook_events_dropped_total";
pub const QUEUE_DEPTH: &str = "burnlink_webhook_queue_depth";

type HmacSha256 = Hmac<Sha256>;

/// The signing secret, `whsec_` + base64 of the key bytes. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Parses `whsec_BASE64` (standard base64, as the Standard Webhooks libraries write it).
    pub fn parse(s: &str) -> Result<Secret, String> {
        let b64 = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or("expected `whsec_` followed by base64")?;
        let key = Base64::decode_vec(b64).map_err(|_| "the part after `whsec_` is not base64")?;
        if key.len() < 24 {
            return Err(format!(
                "the key has {} bytes, at least 24 are required",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", Base64::encode_string(&mac.finalize().into_bytes()))
    }
}

/// Where events go and how they are signed (`BURNLINK_WEBHOOK_URL`, `_SECRET`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
}

/// The event body, as documented in `docs/webhooks.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, UTC: when it happened (not when it was sent).
    pub timestamp: String,
    pub data: EventData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The link's short id (as in audit lines), never its token.
    pub link: String,
    pub direction: String,
    pub path: String,
    pub session: Option<String>,
    /// Bytes this transfer moved (0 for a revocation).
    pub bytes: u64,
    /// Uploads: the SHA-256 (hex) of the file in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Completed transfers of the link so far.
    pub uses: u16,
    pub max_uses: u16,
    /// The client's address, when known.
    pub client: Option<String>,
}

impl Event {
    pub fn new(kind: &str, claims: &Claims, data: Completed) -> Event {
        Event {
            kind: kind.to_string(),
            timestamp: rfc3339_now(),
            data: EventData {
                link: claims.short_id(),
                direction: claims.direction.as_str().to_string(),
                path: claims.path.to_string(),
                session: claims.session.as_ref().map(|s| s.as_str().to_string()),
                bytes: data.bytes,
                sha256: data.sha256.map(|d| hex(&d)),
                uses: data.uses,
                max_uses: claims.max_uses,
                client: data.client.map(|c| c.to_string()),
            },
        }
    }
}

/// Now as RFC 3339 UTC, whole seconds (`2026-12-05T07:01:12Z`).
fn rfc3339_now() -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(unix_now() as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// What a transfer or revocation adds to the token's fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct Completed {
    pub bytes: u64,
    pub sha256: Option<[u8; 32]>,
    pub uses: u16,
    pub client: Option<IpAddr>,
}

/// One event ready to send: its id (the same on every attempt and every replica) and body.
#[derive(Clone, Debug)]
struct Envelope {
    id: String,
    body: String,
}

/// Where emitted events wait.
enum Queue {
    Memory(mpsc::Sender<Envelope>),
    Redis(RedisHandle),
}

/// The webhook sender: cheap to clone, shared by the lease keeper and the links service.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    /// The receiver's URL without its credentials (they are in `authorization`).
    url: hyper::Uri,
    authorization: Option<String>,
    secret: Secret,
    client: crate::http_client::HttpClient,
    queue: Queue,
    /// This replica's consumer name in the Redis group (`{pid}-{random}`).
    consumer: String,
    permits: Arc<Semaphore>,
    /// Stream entries this replica is delivering now.
    in_flight: Mutex<HashSet<String>>,
    /// Events dropped because the queue was full (also a metric).
    dropped: AtomicU64,
}

/// Appends to the stream unless it is full. `KEYS[1]` the stream; `ARGV[1]` the maximum
/// length; `ARGV[2]` the event id; `ARGV[3]` the body. Answers 1 when added, 0 when full.
static ENQUEUE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
          redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'body', ARGV[3])
          return 1",
    )
});

impl Webhooks {
    /// Starts the sender and its delivery tasks: events wait in memory, or in Redis when
    /// `redis` is given (the ledger's connection). Fails when the URL is unusable or the
    /// trusted roots cannot be read; the message never holds the URL.
    pub fn start(config: WebhookConfig, redis: Option<RedisHandle>) -> Result<Webhooks, String> {
        let client = crate::http_client::client(ATTEMPT_TIMEOUT)?;
        let (url, authorization) = split_credentials(&config.url)?;
        let consumer = format!("{}-{}", std::process::id(), hex(&rand::random::<[u8; 4]>()));
        let (queue, receiver) = match redis {
            Some(conn) => (Queue::Redis(conn), None),
            None => {
                let (tx, rx) = mpsc::channel(MEMORY_QUEUE);
                (Queue::Memory(tx), Some(rx))
            }
        };
        let webhooks = Webhooks {
            inner: Arc::new(Inner {
                url,
                authorization,
                secret: config.secret,
                client,
                queue,
                consumer,
                permits: Arc::new(Semaphore::new(IN_FLIGHT)),
                in_flight: Mutex::new(HashSet::new()),
                dropped: AtomicU64::new(0),
            }),
        };
        match receiver {
            Some(rx) => {
                tokio::spawn(webhooks.clone().run_memory(rx));
            }
            None => {
                tokio::spawn(webhooks.clone().run_redis());
            }
        }
        Ok(webhooks)
    }

    /// Queues an event for delivery. Never waits on the receiver and never fails the caller.
    pub fn emit(&self, event: Event) {
        let envelope = Envelope {
            id: format!("msg_{}", hex(&rand::random::<[u8; 16]>())),
            body: serde_json::to_string(&event).expect("events serialise"),
        };
        let link = event.data.link;
        match &self.inner.queue {
            Queue::Memory(tx) => {
                if tx.try_send(envelope).is_err() {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(DROPPED).increment(1);
                    tracing::warn!(%link, kind = %event.kind, "webhook queue full; event dropped");
                }
                metrics::gauge!(QUEUE_DEPTH).set((MEMORY_QUEUE - tx.capacity()) as f64);
            }
            Queue::Redis(conn) => {
                let mut conn = conn.clone();
                tokio::spawn(async move {
                    let mut call = ENQUEUE.key(STREAM);
                    call.arg(REDIS_MAX_LEN)
                        .arg(&envelope.id)
                        .arg(&envelope.body);
                    let added: Result<i64, _> =
                        crate::ledger::redis::bounded(call.invoke_async(&mut conn)).await;
                    match added {
                        Ok(1) => {}
                        Ok(_) => {
                            metrics::counter!(DROPPED).increment(1);
                            tracing::warn!(%link, "webhook stream full; event dropped");
                        }
                        Err(e) => {
                            metrics::counter!(DROPPED).increment(1);
                            tracing::error!(%link, error = %e, "could not queue a webhook event; dropped");
                        }
                    }
                });
            }
        }
    }

    /// Events this process dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    async fn run_memory(self, mut rx: mpsc::Receiver<Envelope>) {
        while let Some(envelope) = rx.recv().await {
            if let Queue::Memory(tx) = &self.inner.queue {
                metrics::gauge!(QUEUE_DEPTH).set((MEMORY_QUEUE - tx.capacity()) as f64);
            }
            let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.deliver(&envelope, || async { true }).await;
                drop(permit);
            });
        }
    }

    /// Reads new entries as a member of the group, and every few seconds takes over entries
    /// a dead replica left pending.
    async fn run_redis(self) {
        let Queue::Redis(conn) = &self.inner.queue else {
            return;
        };
        let mut conn = conn.clone();
        let mut group_ready = false;
        let mut last_reclaim = Instant::now();
        loop {
            if !group_ready {
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                group_ready = match created {
                    Ok(()) => true,
                    Err(e) => e.code() == Some("BUSYGROUP"),
                };
                if !group_ready {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let free = self.inner.permits.available_permits();
            let mut got = 0;
            if free > 0 {
                let read: redis::RedisResult<Value> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.inner.consumer)
                    .arg("COUNT")
                    .arg(free)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(">")
                    .query_async(&mut conn)
                    .await;
                match read {
                    Ok(v) => {
                        let entries = stream_entries(&v);
                        got = entries.len();
                        self.spawn_deliveries(entries).await;
                    }
                    Err(e) if e.code() == Some("NOGROUP") => group_ready = false,
                    Err(e) => {
                        // Redis is down or slow: try again in a second, not every poll.
                        tracing::warn!(error = %e, "webhooks: could not read the stream");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if last_reclaim.elapsed() >= RECLAIM_EVERY && self.inner.permits.available_permits() > 0
            {
                last_reclaim = Instant::now();
                let claimed: redis::RedisResult<Value> = redis::cmd("XAUTOCLAIM")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg(&self.inner.consumer)
                    .arg(CLAIM_IDLE.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(self.inner.permits.available_permits())
                    .query_async(&mut conn)
                    .await;
                if let Ok(Value::Array(parts)) = claimed
                    && let Some(list) = parts.get(1)
                {
                    let entries = entry_list(list);
                    if !entries.is_empty() {
                        tracing::info!(
                            events = entries.len(),
                            "webhooks: taking over events another replica left undelivered"
                        );
                    }
                    self.spawn_deliveries(entries).await;
                }
                let depth: redis::RedisResult<u64> =
                    redis::cmd("XLEN").arg(STREAM).query_async(&mut conn).await;
                if let Ok(depth) = depth {
                    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
                }
            }
            if got == 0 {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    async fn spawn_deliveries(&self, entries: Vec<(String, Envelope)>) {
        for (stream_id, envelope) in entries {
            if !lock(&self.inner.in_flight).insert(stream_id.clone()) {
                continue;
            }
            let Ok(permit) = self.inner.permits.clone().acquire_owned().await else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let Queue::Redis(conn) = &this.inner.queue else {
                    return;
                };
                let conn = conn.clone();
                let keep = {
                    let (conn, consumer, id) =
                        (conn.clone(), this.inner.consumer.clone(), stream_id.clone());
                    move || {
                        let (mut conn, consumer, id) = (conn.clone(), consumer.clone(), id.clone());
                        async move { still_ours(&mut conn, &consumer, &id).await }
                    }
                };
                this.deliver(&envelope, keep).await;
                let mut conn = conn;
                let done: redis::RedisResult<()> = redis::pipe()
                    .cmd("XACK")
                    .arg(STREAM)
                    .arg(GROUP)
                    .arg(&stream_id)
                    .ignore()
                    .cmd("XDEL")
                    .arg(STREAM)
                    .arg(&stream_id)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, id = %envelope.id, "webhooks: could not acknowledge a delivered event");
                }
                lock(&this.inner.in_flight).remove(&stream_id);
                drop(permit);
            });
        }
    }

    /// Sends one event until a 2xx answer, retrying with backoff for at most [`RETRY_FOR`].
    /// `keep` runs before each attempt: `false` means another replica took the event over.
    async fn deliver<F, Fut>(&self, envelope: &Envelope, keep: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        let mut failures: u32 = 0;
        loop {
            if !keep().await {
                return;
            }
            match self.attempt(envelope).await {
                Ok(()) => {
                    metrics::counter!(SENT).increment(1);
                    tracing::debug!(id = %envelope.id, attempts = failures + 1, "webhook delivered");
                    return;
                }
                Err(why) => {
                    failures += 1;
                    let delay = backoff(failures);
                    if started.elapsed() + delay > RETRY_FOR {
                        metrics::counter!(FAILED).increment(1);
                        tracing::error!(id = %envelope.id, attempts = failures, %why, "webhook given up");
                        return;
                    }
                    metrics::counter!(RETRIED).increment(1);
                    tracing::warn!(id = %envelope.id, attempt = failures, %why, retry_in_ms = delay.as_millis() as u64, "webhook not delivered; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, envelope: &Envelope) -> Result<(), String> {
        let timestamp = unix_now();
        let signature = self
            .inner
            .secret
            .sign(&envelope.id, timestamp, &envelope.body);
        let mut request = hyper::Request::post(self.inner.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &envelope.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        if let Some(auth) = &self.inner.authorization {
            request = request.header("authorization", auth);
        }
        let request = request
            .body(crate::http_client::full(envelope.body.clone()))
            .map_err(|_| "the request could not be built".to_string())?;
        // The receiver's answer is not read past a few KiB; the error names no URL (it is
        // operator configuration and may carry credentials).
        let (status, _) = self.inner.client.exchange(request, 4096).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        }
    }
}

/// The URL without its user information, and that as an HTTP Basic `Authorization` value.
fn split_credentials(url: &str) -> Result<(hyper::Uri, Option<String>), String> {
    let mut parsed = url::Url::parse(url).map_err(|_| "not a valid URL".to_string())?;
    let authorization = if parsed.username().is_empty() && parsed.password().is_none() {
        None
    } else {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let pair = format!(
            "{}:{}",
            decode(parsed.username()),
            decode(parsed.password().unwrap_or(""))
        );
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Some(format!("Basic {}", Base64::encode_string(pair.as_bytes())))
    };
    let uri = parsed
        .as_str()
        .parse::<hyper::Uri>()
        .map_err(|_| "not a valid URL".to_string())?;
    Ok((uri, authorization))
}

/// Resets the entry's idle time if it is still this consumer's (`XCLAIM … JUSTID`); `false`
/// when another consumer owns it now. A Redis error keeps trying (the entry stays pending).
async fn still_ours(conn: &mut RedisHandle, consumer: &str, id: &str) -> bool {
    let claimed: redis::RedisResult<Vec<String>> = redis::cmd("XCLAIM")
        .arg(STREAM)
        .arg(GROUP)
        .arg(consumer)
        .arg(0)
        .arg(id)
        .arg("JUSTID")
        .query_async(conn)
        .await;
    match claimed {
        Ok(ids) => !ids.is_empty(),
        Err(_) => true,
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_CAP);
    let jitter = 0.5 + rand::random::<f64>();
    capped.mul_f64(jitter)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `XREADGROUP`'s answer: `[[stream, [[id, [field, value, …]], …]]]` (RESP2), or a map.
fn stream_entries(v: &Value) -> Vec<(String, Envelope)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => entry_list(&pair[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().flat_map(|(_, l)| entry_list(l)).collect(),
        _ => Vec::new(),
    }
}

fn entry_list(v: &Value) -> Vec<(String, Envelope)> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(pair) = e else { return None };
            let id = text(pair.first()?)?;
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            let mut event_id = None;
            let mut body = None;
            for kv in fields.chunks(2) {
                match (kv.first().and_then(text).as_deref(), kv.get(1)) {
                    (Some("id"), Some(v)) => event_id = text(v),
                    (Some("body"), Some(v)) => body = text(v),
                    _ => {}
                }
            }
            Some((
                id,
                Envelope {
                    id: event_id?,
                    body: body?,
                },
            ))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Names and describes the webhook metrics (with the recorder in `metrics.rs`).
pub fn describe_metrics() {
    metrics::describe_counter!(SENT, "Webhook events delivered (a 2xx answer)");
    metrics::describe_counter!(FAILED, "Webhook events given up after retrying");
    metrics::describe_counter!(
        RETRIED,
        "Webhook delivery attempts that failed and were retried"
    );
    metrics::describe_counter!(DROPPED, "Webhook events dropped because the queue was full");
    metrics::describe_gauge!(QUEUE_DEPTH, "Webhook events waiting to be delivered");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signs_like_the_specification() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_!!").is_err());
        assert_eq!(format!("{secret:?}"), "Secret(…)");
    }

    /// A receiver that accepts connections and never answers: 32 deliveries hang (and one
    /// more waits for a slot), the queue
    /// fills to its bound, and every event beyond it is dropped and counted, not buffered.
    #[tokio::test]
    async fn a_stalled_receiver_cannot_grow_the_memory_queue_past_its_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hooks = Webhooks::start(
            WebhookConfig {
                url: format!("http://127.0.0.1:{port}/"),
                secret: Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            },
            None,
        )
        .unwrap();
        let claims = Claims::new(crate::token::Direction::Download, None, "f".into(), 1);
        let extra = 500;
        for _ in 0..MEMORY_QUEUE + IN_FLIGHT + extra {
            hooks.emit(Event::new(
                "link.transferred",
                &claims,
                Completed::default(),
            ));
            // Let the worker take the first ones into flight.
            tokio::task::yield_now().await;
        }
        let dropped = hooks.dropped() as usize;
        assert!(
            (extra - 1..=extra + IN_FLIGHT).contains(&dropped),
            "dropped {dropped}"
        );
        drop(listener);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for n in 1..40 {
            let d = backoff(n);
            assert!(
                d >= BACKOFF_BASE / 2 && d <= BACKOFF_CAP.mul_f64(1.5),
                "{n}: {d:?}"
            );
        }
        assert!(backoff(30) >= BACKOFF_CAP / 2);
    }
}

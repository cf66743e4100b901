//! The shared ledger in Redis, for several replicas behind a load balancer.
//!
//! One key per link that was ever touched, `burnlink:n:{hex nonce}`; a link never used has no
//! key. Its value says where the link is:
//!
//! - `L{owner, 32 hex}{retain-until, unix s}` — leased, with a `PX` of the lease lifetime, so a
//!   lease whose replica died is simply gone after its lifetime and the link is unused again;
//! - `U` or `U{bytes}:{sha256 hex}` — burned (with an upload's receipt);
//! - `R` — revoked.
//!
//! A link of several uses (`max_uses` ≥ 2) is a hash instead, since it counts uses and may run
//! several leases at once: `m` max uses, `u` uses so far, `r` the last upload's receipt
//! (`{bytes}:{sha256 hex}`), `s` `U` once burned or `R` once revoked, and one field per running
//! lease, `L{owner, 32 hex}` = its deadline in milliseconds on Redis's clock (`TIME`). The key
//! expires (`EXAT`) at the retain-until second; a lapsed lease field is dropped by the next
//! lease. Single-use links keep the string values above, so their fast path is unchanged.
//!
//! Burned and revoked keys expire (`EXAT`) at the token's expiry plus
//! [`RETAIN_AFTER_EXPIRY_S`], like the memory ledger, so status still says `used` for a while.
//! The retain-until second rides in the lease value because `commit` is not told the expiry.
//!
//! Every transition is one atomic round trip: `lease` is `SET NX GET PX` (Redis ≥ 7.0), the
//! fenced ones (renew, commit, release, revoke) are small Lua scripts that compare the owner
//! and act in one step, `usage` is one read-only script. Each script touches one key, so a
//! Redis Cluster may shard nonces freely. The scripts read the key's `TYPE` first and act on
//! either shape.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{Script, Value};

use super::memory::RETAIN_AFTER_EXPIRY_S;
pub use super::redis_conn::{OpenError, RedisHandle, RedisOptions, Target, Topology};
use super::{Acquire, Answer, Ledger, LedgerError, LinkState, Owner, Receipt, Revoke, Usage};
use crate::token::Nonce;

pub use super::redis_conn::OP_TIMEOUT;

/// The longest a burn waits for replicas (`WAIT`, with `BURNLINK_LEDGER_REPLICAS`): under a
/// node's response timeout, so the wait is never mistaken for a dead node, and well inside
/// [`OP_TIMEOUT`] together with the burn itself.
pub const REPLICA_WAIT: Duration = Duration::from_millis(800);

/// Opens a lazily connecting, self-reconnecting handle on one node: nothing is sent until the
/// first call, so a replica starts even when Redis is down at boot (its `/readyz` fails until
/// Redis is up). Only a malformed URL is an error here. [`RedisHandle::open`] takes every
/// URL form and the TLS files.
/// Runs one call under [`OP_TIMEOUT`], every failure `Unavailable` (fail closed).
pub(crate) async fn bounded<T>(
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LedgerError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LedgerError::Unavailable(format!("redis: {e}"))),
        Err(_) => Err(LedgerError::Unavailable(format!(
            "redis: no answer within {OP_TIMEOUT:?}"
        ))),
    }
}

pub fn connect(url: &str) -> Result<RedisHandle, redis::RedisError> {
    RedisHandle::single(url)
}

/// Lua: Redis's clock in milliseconds, for lease deadlines inside a hash (scripts are
/// replicated by their effects, so reading the clock is allowed).
macro_rules! lua_now {
    () => {
        "local t = redis.call('TIME')
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        "
    };
}

/// `KEYS[1]` the link; `ARGV[1]` the owner tag `L{owner}`; `ARGV[2]` lifetime in ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local ty = redis.call('TYPE', KEYS[1])['ok']
         if ty == 'string' then
           local v = redis.call('GET', KEYS[1])
           if string.sub(v, 1, 33) == ARGV[1] then
             redis.call('PEXPIRE', KEYS[1], ARGV[2])
             return 1
           end
           return 0
         end
         if ty ~= 'hash' then return 0 end
        ",
        lua_now!(),
        "local d = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
         if d > now then
           redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
           return 1
         end
         return 0",
    ))
});

/// `ARGV[1]` the owner tag; `ARGV[2]` lifetime in ms; `ARGV[3]` max uses; `ARGV[4]`
/// retain-until (unix s). Answers `G` granted, `B` busy, `U` used, `R` revoked.
static LEASE_SEVERAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local k = KEYS[1]
         local ty = redis.call('TYPE', k)['ok']
         if ty == 'string' then
           local c = string.sub(redis.call('GET', k), 1, 1)
           if c == 'L' then return 'B' end
           return c
         end
         local s = redis.call('HGET', k, 's')
         if s then return s end
        ",
        lua_now!(),
        "local uses = tonumber(redis.call('HGET', k, 'u') or '0')
         local live = 0
         local all = redis.call('HGETALL', k)
         for i = 1, #all, 2 do
           local f = all[i]
           if string.sub(f, 1, 1) == 'L' then
             if f ~= ARGV[1] and tonumber(all[i + 1]) > now then
               live = live + 1
             else
               redis.call('HDEL', k, f)
             end
           end
         end
         if uses + live >= tonumber(ARGV[3]) then return 'B' end
         redis.call('HSET', k, ARGV[1], now + tonumber(ARGV[2]), 'u', uses, 'm', ARGV[3])
         redis.call('EXPIREAT', k, ARGV[4])
         return 'G'",
    ))
});

/// `ARGV[1]` the owner tag; `ARGV[2]` the burned value (`U` or `U{receipt}`). Answers the
/// uses after the commit, 0 when the owner holds no lease. A single-use lease keeps the key
/// until the retain-until second stored in it.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local k = KEYS[1]
         local ty = redis.call('TYPE', k)['ok']
         if ty == 'string' then
           local v = redis.call('GET', k)
           if string.sub(v, 1, 33) == ARGV[1] then
             redis.call('SET', k, ARGV[2], 'EXAT', string.sub(v, 34))
             return 1
           end
           return 0
         end
         if ty ~= 'hash' then return 0 end
        ",
        lua_now!(),
        "local d = tonumber(redis.call('HGET', k, ARGV[1]) or '0')
         if d <= now then return 0 end
         redis.call('HDEL', k, ARGV[1])
         local uses = redis.call('HINCRBY', k, 'u', 1)
         if string.len(ARGV[2]) > 1 then
           redis.call('HSET', k, 'r', string.sub(ARGV[2], 2))
         end
         if uses >= tonumber(redis.call('HGET', k, 'm') or '1') then
           redis.call('HSET', k, 's', 'U')
         end
         return uses",
    ))
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local k = KEYS[1]
          local ty = redis.call('TYPE', k)['ok']
          if ty == 'string' then
            local v = redis.call('GET', k)
            if string.sub(v, 1, 33) == ARGV[1] then
              redis.call('DEL', k)
            end
          elseif ty == 'hash' then
            redis.call('HDEL', k, ARGV[1])
            if tonumber(redis.call('HGET', k, 'u') or '0') == 0 and redis.call('HLEN', k) <= 2 then
              redis.call('DEL', k)
            end
          end
          return 0",
    )
});

/// `ARGV[1]` retain-until (unix s). Leases in flight are dropped, which fences their owners.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local k = KEYS[1]
          local ty = redis.call('TYPE', k)['ok']
          if ty == 'hash' then
            local s = redis.call('HGET', k, 's')
            if s then return s end
            local all = redis.call('HKEYS', k)
            for i = 1, #all do
              if string.sub(all[i], 1, 1) == 'L' then redis.call('HDEL', k, all[i]) end
            end
            redis.call('HSET', k, 's', 'R')
            return 'G'
          end
          if ty == 'string' then
            local c = string.sub(redis.call('GET', k), 1, 1)
            if c == 'U' or c == 'R' then return c end
          end
          redis.call('SET', k, 'R', 'EXAT', ARGV[1])
          return 'G'",
    )
});

/// Read-only. Answers `{}` for an untouched link, `{value}` for a single-use link, and
/// `{state, uses, receipt}` for a link of several uses, state one of `U`, `R`, `L` (a lease
/// runs) or `N` (none runs).
static USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local k = KEYS[1]
         local ty = redis.call('TYPE', k)['ok']
         if ty == 'string' then return {redis.call('GET', k)} end
         if ty ~= 'hash' then return {} end
        ",
        lua_now!(),
        "local all = redis.call('HGETALL', k)
         local h = {}
         local state = 'N'
         for i = 1, #all, 2 do
           local f = all[i]
           h[f] = all[i + 1]
           if string.sub(f, 1, 1) == 'L' and tonumber(all[i + 1]) > now then state = 'L' end
         end
         return {h['s'] or state, h['u'] or '0', h['r'] or ''}",
    ))
});

/// The webhook queue's stream, kept in the ledger's database when the ledger is Redis; named
/// here so that [`RedisLedger::entries`] can leave it out of the link count (the webhook
/// sender uses this name).
pub const WEBHOOK_STREAM: &str = "burnlink:{webhooks}:events";

pub struct RedisLedger {
    redis: RedisHandle,
    /// `BURNLINK_LEDGER_REPLICAS`: after each burn, `WAIT` for this many replicas.
    replicas: u32,
    /// Burns that will `WAIT` run here, not on `redis`: Redis blocks the whole client
    /// connection during `WAIT`, and `redis` is one multiplexed connection (per node, in a
    /// cluster) that every lease, renewal and read shares, so a `WAIT` there would hold them
    /// all up. `WAIT` must go on the connection that wrote, hence the burn moves with it.
    /// A second handle opened from the same options follows Sentinel failovers and cluster
    /// slots exactly as `redis` does.
    burns: RedisHandle,
    /// What the last waits found: see [`Replication`].
    replication: Arc<Replication>,
}

/// Set after a shortfall: while replicas are missing, one burn at a time waits
/// [`DEGRADED_WAIT`] to see whether they are back, and the others do not wait at all (each is
/// counted as short). So a missing replica costs one full [`REPLICA_WAIT`] per outage, and
/// burns never queue on the burn connection behind one another's waits, which would take them
/// past [`OP_TIMEOUT`] and leave delivered links unburned. A fully acknowledged wait clears it.
#[derive(Default)]
struct Replication {
    degraded: AtomicBool,
    /// A burn is waiting to see whether the replicas are back.
    probing: AtomicBool,
}

/// What became of a burn's wait for replicas.
enum Waited {
    /// No wait was asked for (no replicas wanted, or the script wrote nothing).
    NotAsked,
    /// Degraded, and another burn is the one waiting: counted as short.
    Skipped,
    /// The `WAIT`'s answer, or its timeout.
    Done(Result<redis::RedisResult<u64>, tokio::time::error::Elapsed>),
}

/// Clears [`Replication::probing`] however the probing burn ends (its call may be dropped at
/// the bound).
struct Probe(Arc<Replication>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

/// How long a burn waits for replicas while the ledger is degraded (see
/// [`Replication`]): long enough for healthy replicas to acknowledge on a quiet
/// network, so recovery is noticed by the next burn, short enough not to queue burns.
pub const DEGRADED_WAIT: Duration = Duration::from_millis(20);

impl RedisLedger {
    pub fn new(redis: RedisHandle) -> Self {
        RedisLedger {
            burns: redis.clone(),
            redis,
            replicas: 0,
            replication: Arc::default(),
        }
    }

    /// A ledger whose burns (commit, revoke) each wait until `replicas` replicas hold them, or
    /// [`REPLICA_WAIT`] passes; a shortfall is logged and counted
    /// (`burnlink_ledger_unreplicated_total`), and the burn stands.
    ///
    /// `burns` must be a handle of its own (opened separately from the same options), used
    /// only for burns: see [`RedisLedger::burns`].
    pub fn with_replicas(redis: RedisHandle, burns: RedisHandle, replicas: u32) -> Self {
        RedisLedger {
            redis,
            burns,
            replicas,
            replication: Arc::default(),
        }
    }

    /// Runs one script under [`OP_TIMEOUT`], on whichever node owns its key.
    async fn script<T>(&self, call: redis::ScriptInvocation<'static>) -> Result<T, LedgerError>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.redis
            .run(OP_TIMEOUT, move |mut conn| async move {
                call.invoke_async(&mut conn).await
            })
            .await
    }

    /// Runs a burn (`script` returns `burned` when it wrote), then, when replicas are asked
    /// for, `WAIT`s on the node that took the write, over the same connection (the burn
    /// handle, never the shared one), all inside [`OP_TIMEOUT`]: [`REPLICA_WAIT`] normally,
    /// and after a shortfall as [`Replication`] says. The script's answer is returned even if
    /// the wait fails: the burn happened either way.
    async fn burn<T>(
        &self,
        key: String,
        call: redis::ScriptInvocation<'static>,
        burned: impl Fn(&T) -> bool + Send + 'static,
    ) -> Result<T, LedgerError>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        let replicas = self.replicas;
        let started = Instant::now();
        let handle = if replicas == 0 {
            &self.redis
        } else {
            &self.burns
        };
        let replication = self.replication.clone();
        let (answer, waited) = handle
            .run(OP_TIMEOUT, move |mut conn| async move {
                let answer: T = call.invoke_async(&mut conn).await?;
                if replicas == 0 || !burned(&answer) {
                    return Ok((answer, Waited::NotAsked));
                }
                // Decided once the write is done, so burns queued behind a first shortfall
                // see it.
                let (full, _probe) = if !replication.degraded.load(Ordering::Acquire) {
                    (REPLICA_WAIT, None)
                } else if !replication.probing.swap(true, Ordering::AcqRel) {
                    (DEGRADED_WAIT, Some(Probe(replication.clone())))
                } else {
                    return Ok((answer, Waited::Skipped));
                };
                // What is left of the bound, less a margin for the answer to come back.
                let budget = OP_TIMEOUT
                    .saturating_sub(started.elapsed())
                    .saturating_sub(Duration::from_millis(300))
                    .min(full);
                let mut wait = redis::cmd("WAIT");
                wait.arg(replicas).arg(budget.as_millis().max(1) as u64);
                let acked = tokio::time::timeout(
                    budget + Duration::from_millis(150),
                    conn.on_key_node::<u64>(&key, wait),
                )
                .await;
                Ok((answer, Waited::Done(acked)))
            })
            .await?;
        match waited {
            Waited::NotAsked => {}
            Waited::Skipped => crate::metrics::ledger_unreplicated(),
            Waited::Done(Ok(Ok(n))) if n >= u64::from(replicas) => {
                let recovered = self.replication.degraded.swap(false, Ordering::AcqRel);
                if recovered {
                    tracing::info!(
                        wanted = replicas,
                        "ledger: burns reach BURNLINK_LEDGER_REPLICAS Redis replicas again"
                    );
                }
            }
            Waited::Done(outcome) => {
                crate::metrics::ledger_unreplicated();
                if self.replication.degraded.swap(true, Ordering::AcqRel) {
                    // Already logged when the shortfall began; every short burn is counted.
                    return Ok(answer);
                }
                let acked = match &outcome {
                    Ok(Ok(n)) => n.to_string(),
                    Ok(Err(e)) => format!("unknown ({e})"),
                    Err(_) => "unknown (no answer)".to_string(),
                };
                tracing::warn!(
                    wanted = replicas,
                    acked = %acked,
                    "ledger: a burn reached fewer Redis replicas than BURNLINK_LEDGER_REPLICAS \
                     asks within {REPLICA_WAIT:?}; a failover now could forget it. Until a \
                     burn is fully acknowledged, one burn at a time waits {DEGRADED_WAIT:?} \
                     for them, the others do not wait, and each short one is counted in \
                     burnlink_ledger_unreplicated_total"
                );
            }
        }
        Ok(answer)
    }
}

pub fn key(nonce: &Nonce) -> String {
    format!("burnlink:n:{}", hex(nonce))
}

fn owner_tag(owner: Owner) -> String {
    format!("L{:032x}", owner.0)
}

/// When a spent entry may go: the token's expiry plus the retention margin, capped like the
/// memory ledger's (tokens far in the future would overflow Redis's expiry arithmetic).
fn retain_until(expires_at: u64) -> u64 {
    expires_at
        .min(u64::from(u32::MAX))
        .saturating_add(RETAIN_AFTER_EXPIRY_S)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn burned_value(receipt: Option<Receipt>) -> String {
    match receipt {
        None => "U".to_string(),
        Some(r) => format!("U{}:{}", r.bytes, hex(&r.sha256)),
    }
}

fn parse_receipt(rest: &str) -> Option<Receipt> {
    let (bytes, digest) = rest.split_once(':')?;
    if digest.len() != 64 {
        return None;
    }
    let mut sha256 = [0u8; 32];
    for (i, out) in sha256.iter_mut().enumerate() {
        *out = u8::from_str_radix(digest.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Receipt {
        bytes: bytes.parse().ok()?,
        sha256,
    })
}

/// Reads a stored value; anything unrecognised counts as burned (fail closed).
fn parse_state(value: &str) -> LinkState {
    match value.as_bytes().first() {
        Some(b'L') => LinkState::InProgress,
        Some(b'R') => LinkState::Revoked,
        Some(b'U') if value.len() == 1 => LinkState::Used(None),
        Some(b'U') => match parse_receipt(&value[1..]) {
            Some(r) => LinkState::Used(Some(r)),
            None => {
                tracing::warn!("unreadable receipt in the Redis ledger; reporting it without");
                LinkState::Used(None)
            }
        },
        _ => {
            tracing::error!("unrecognised value in the Redis ledger; treating the link as used");
            LinkState::Used(None)
        }
    }
}

/// Reads the [`USAGE`] script's answer.
fn parse_usage(answer: &[String]) -> Usage {
    match answer {
        [] => Usage {
            state: LinkState::Unused,
            uses: 0,
            receipt: None,
        },
        [value] => {
            let state = parse_state(value);
            let (uses, receipt) = match state {
                LinkState::Used(r) => (1, r),
                _ => (0, None),
            };
            Usage {
                state,
                uses,
                receipt,
            }
        }
        [s, uses, receipt, ..] => {
            let receipt = parse_receipt(receipt);
            let state = match s.as_str() {
                "N" => LinkState::Unused,
                "L" => LinkState::InProgress,
                "R" => LinkState::Revoked,
                "U" => LinkState::Used(receipt),
                _ => {
                    tracing::error!("unrecognised state in the Redis ledger; treating it as used");
                    LinkState::Used(None)
                }
            };
            Usage {
                state,
                uses: uses.parse().unwrap_or(u16::MAX),
                receipt,
            }
        }
        _ => {
            tracing::error!("unrecognised answer from the Redis ledger; treating it as used");
            Usage {
                state: LinkState::Used(None),
                uses: 0,
                receipt: None,
            }
        }
    }
}

#[async_trait]
impl Ledger for RedisLedger {
    fn lease<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
        max_uses: u16,
    ) -> Answer<'a, Result<Acquire, LedgerError>> {
        Answer::later(async move {
            let ms = lifetime.as_millis().max(1) as u64;
            if max_uses > 1 {
                let mut call = LEASE_SEVERAL.key(key(nonce));
                call.arg(owner_tag(owner))
                    .arg(ms)
                    .arg(max_uses)
                    .arg(retain_until(expires_at));
                let answer: String = self.script(call).await?;
                return Ok(match answer.as_str() {
                    "G" => Acquire::Granted,
                    "B" => Acquire::Busy,
                    "R" => Acquire::Revoked,
                    _ => Acquire::Used,
                });
            }
            let value = format!("{}{}", owner_tag(owner), retain_until(expires_at));
            let mut cmd = redis::cmd("SET");
            cmd.arg(key(nonce))
                .arg(value)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ms);
            let previous: Option<String> = self
                .redis
                .run(OP_TIMEOUT, move |mut c| async move {
                    cmd.query_async(&mut c).await
                })
                .await?;
            Ok(match previous.as_deref().map(parse_state) {
                None => Acquire::Granted,
                Some(LinkState::InProgress) => Acquire::Busy,
                Some(LinkState::Revoked) => Acquire::Revoked,
                Some(_) => Acquire::Used,
            })
        })
    }

    async fn renew(
        &self,
        nonce: &Nonce,
        owner: Owner,
        lifetime: Duration,
    ) -> Result<bool, LedgerError> {
        let ms = lifetime.as_millis().max(1) as u64;
        let mut call = RENEW.key(key(nonce));
        call.arg(owner_tag(owner)).arg(ms);
        let renewed: i64 = self
            .redis
            .run(OP_TIMEOUT, move |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(renewed == 1)
    }

    fn commit<'a>(
        &'a self,
        nonce: &'a Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Answer<'a, Result<Option<u16>, LedgerError>> {
        Answer::later(async move {
            let mut call = COMMIT.key(key(nonce));
            call.arg(owner_tag(owner)).arg(burned_value(receipt));
            // The script answers the uses spent after this commit, 0 when the lease was lost.
            let uses: i64 = self.burn(key(nonce), call, |c: &i64| *c > 0).await?;
            Ok((uses > 0).then(|| uses.min(i64::from(u16::MAX)) as u16))
        })
    }

    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError> {
        let mut call = RELEASE.key(key(nonce));
        call.arg(owner_tag(owner));
        let _: i64 = self
            .redis
            .run(OP_TIMEOUT, move |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError> {
        let mut call = REVOKE.key(key(nonce));
        call.arg(retain_until(expires_at));
        let answer: String = self.burn(key(nonce), call, |a: &String| a == "G").await?;
        Ok(match answer.as_str() {
            "U" => Revoke::AlreadyUsed,
            "R" => Revoke::AlreadyRevoked,
            _ => Revoke::Revoked,
        })
    }

    async fn usage(&self, nonce: &Nonce) -> Result<Usage, LedgerError> {
        let answer: Vec<String> = self.script(USAGE.key(key(nonce))).await?;
        Ok(parse_usage(&answer))
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let pong: Value = self
            .redis
            .run(OP_TIMEOUT, |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        match pong {
            Value::SimpleString(_) | Value::BulkString(_) => Ok(()),
            other => Err(LedgerError::Unavailable(format!(
                "redis: unexpected PING answer {other:?}"
            ))),
        }
    }

    /// Link keys only: the keys of the ledger's database (`DBSIZE`, summed over the primaries
    /// on a cluster) less the statistics keys, which [`crate::stats::RedisStats::key_count`]
    /// counts in O(1) (`1 + 2 × sessions`: every session has exactly two keys, all in the
    /// `{burnlink:stats}` slot), and less the webhook stream ([`WEBHOOK_STREAM`]) when it
    /// exists. Three commands whatever the number of links, no scan; on a cluster they are
    /// not one snapshot, so the gauge may be off by the links that came or went in between.
    /// Keys that are none of these (another application sharing the database) would be
    /// counted: give the ledger a database of its own.
    async fn entries(&self) -> Result<u64, LedgerError> {
        let all: u64 = self
            .redis
            .run(OP_TIMEOUT, |mut c| async move {
                redis::cmd("DBSIZE").query_async(&mut c).await
            })
            .await?;
        let stats = crate::stats::RedisStats::key_count(&self.redis).await?;
        let stream: u64 = self
            .redis
            .run(OP_TIMEOUT, |mut c| async move {
                redis::cmd("EXISTS")
                    .arg(WEBHOOK_STREAM)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(all.saturating_sub(stats).saturating_sub(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let r = Receipt {
            bytes: u64::MAX,
            sha256: [0xab; 32],
        };
        assert_eq!(
            parse_state(&burned_value(Some(r))),
            LinkState::Used(Some(r))
        );
        assert_eq!(parse_state(&burned_value(None)), LinkState::Used(None));
        assert_eq!(parse_state("R"), LinkState::Revoked);
        assert_eq!(
            parse_state(&format!("{}{}", owner_tag(Owner(5)), 99)),
            LinkState::InProgress
        );
        assert_eq!(owner_tag(Owner(u128::MAX)).len(), 33);
        assert_eq!(parse_state("U12:zz"), LinkState::Used(None));
        assert_eq!(parse_state("?"), LinkState::Used(None), "fail closed");
        let several = |s: &str, u: &str, r: &str| parse_usage(&[s.into(), u.into(), r.into()]);
        assert_eq!(several("N", "2", "").state, LinkState::Unused);
        assert_eq!(several("L", "0", "").state, LinkState::InProgress);
        let receipt = burned_value(Some(r));
        let used = several("U", "3", &receipt[1..]);
        assert_eq!((used.state, used.uses), (LinkState::Used(Some(r)), 3));
        assert_eq!(parse_usage(&[]).state, LinkState::Unused);
        assert_eq!(parse_usage(&["U".into()]).uses, 1);
    }
}

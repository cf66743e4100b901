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
//! Burned and revoked keys expire (`EXAT`) at the token's expiry plus
//! [`RETAIN_AFTER_EXPIRY_S`], like the memory ledger, so status still says `used` for a while.
//! The retain-until second rides in the lease value because `commit` is not told the expiry.
//!
//! Every transition is one atomic round trip: `lease` is `SET NX GET PX` (Redis ≥ 7.0), the
//! fenced ones (renew, commit, release, revoke) are small Lua scripts that compare the owner
//! and act in one step, `state` is a `GET`. Each script touches one key, so a Redis Cluster
//! may shard nonces freely.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{Script, Value};

use super::memory::RETAIN_AFTER_EXPIRY_S;
pub use super::redis_conn::{OpenError, RedisHandle, RedisOptions, Target, Topology};
use super::{Acquire, Ledger, LedgerError, LinkState, Owner, Receipt, Revoke};
use crate::token::Nonce;

/// How long one ledger call may take in all, connecting included (and, on a cluster or with
/// Sentinel, redirections and look-ups). A Redis that hangs must not hang transfers: past
/// this they answer 503 and the client retries.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a burn waits for replicas (`WAIT`, with `BURNLINK_LEDGER_REPLICAS`): under a
/// node's response timeout, so the wait is never mistaken for a dead node, and well inside
/// [`OP_TIMEOUT`] together with the burn itself.
pub const REPLICA_WAIT: Duration = Duration::from_millis(800);

/// Opens a lazily connecting, self-reconnecting handle on one node: nothing is sent until the
/// first call, so a replica starts even when Redis is down at boot (its `/readyz` fails until
/// Redis is up). Only a malformed URL is an error here. [`RedisHandle::open`] takes every
/// URL form and the TLS files.
pub fn connect(url: &str) -> Result<RedisHandle, redis::RedisError> {
    RedisHandle::single(url)
}

/// `KEYS[1]` the link; `ARGV[1]` the owner tag `L{owner}`; `ARGV[2]` lifetime in ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
          if v and string.sub(v, 1, 33) == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          return 0",
    )
});

/// `ARGV[1]` the owner tag; `ARGV[2]` the burned value. Keeps the key until the retain-until
/// second stored in the lease.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
          if v and string.sub(v, 1, 33) == ARGV[1] then
            redis.call('SET', KEYS[1], ARGV[2], 'EXAT', string.sub(v, 34))
            return 1
          end
          return 0",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
          if v and string.sub(v, 1, 33) == ARGV[1] then
            redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});

/// `ARGV[1]` retain-until (unix s). A lease in flight is overwritten, which fences its owner.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
          if v then
            local c = string.sub(v, 1, 1)
            if c == 'U' or c == 'R' then return c end
          end
          redis.call('SET', KEYS[1], 'R', 'EXAT', ARGV[1])
          return 'G'",
    )
});

pub struct RedisLedger {
    redis: RedisHandle,
    /// `BURNLINK_LEDGER_REPLICAS`: after each burn, `WAIT` for this many replicas.
    replicas: u32,
}

impl RedisLedger {
    pub fn new(redis: RedisHandle) -> Self {
        RedisLedger { redis, replicas: 0 }
    }

    /// A ledger whose burns (commit, revoke) each wait until `replicas` replicas hold them, or
    /// [`REPLICA_WAIT`] passes; a shortfall is logged and counted
    /// (`burnlink_ledger_unreplicated_total`), and the burn stands.
    pub fn with_replicas(redis: RedisHandle, replicas: u32) -> Self {
        RedisLedger { redis, replicas }
    }

    /// Runs a burn (`script` returns `burned` when it wrote), then, when replicas are asked
    /// for, `WAIT`s on the node that took the write, over the same connection, all inside
    /// [`OP_TIMEOUT`]. The script's answer is returned even if the wait fails: the burn
    /// happened either way.
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
        let (answer, acked) = self
            .redis
            .run(OP_TIMEOUT, move |mut conn| async move {
                let answer: T = call.invoke_async(&mut conn).await?;
                if replicas == 0 || !burned(&answer) {
                    return Ok((answer, None));
                }
                // What is left of the bound, less a margin for the answer to come back.
                let budget = OP_TIMEOUT
                    .saturating_sub(started.elapsed())
                    .saturating_sub(Duration::from_millis(300))
                    .min(REPLICA_WAIT);
                let mut wait = redis::cmd("WAIT");
                wait.arg(replicas).arg(budget.as_millis().max(1) as u64);
                let acked = tokio::time::timeout(
                    budget + Duration::from_millis(150),
                    conn.on_key_node::<u64>(&key, wait),
                )
                .await;
                Ok((answer, Some(acked)))
            })
            .await?;
        match acked {
            None => {}
            Some(Ok(Ok(n))) if n >= u64::from(replicas) => {}
            Some(outcome) => {
                let acked = match &outcome {
                    Ok(Ok(n)) => n.to_string(),
                    Ok(Err(e)) => format!("unknown ({e})"),
                    Err(_) => "unknown (no answer)".to_string(),
                };
                tracing::warn!(
                    wanted = replicas,
                    acked = %acked,
                    "ledger: a burn reached fewer Redis replicas than BURNLINK_LEDGER_REPLICAS \
                     asks within {REPLICA_WAIT:?}; a failover now could forget it"
                );
                crate::metrics::ledger_unreplicated();
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

#[async_trait]
impl Ledger for RedisLedger {
    async fn lease(
        &self,
        nonce: &Nonce,
        owner: Owner,
        expires_at: u64,
        lifetime: Duration,
    ) -> Result<Acquire, LedgerError> {
        let value = format!("{}{}", owner_tag(owner), retain_until(expires_at));
        let ms = lifetime.as_millis().max(1) as u64;
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

    async fn commit(
        &self,
        nonce: &Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Result<bool, LedgerError> {
        let mut call = COMMIT.key(key(nonce));
        call.arg(owner_tag(owner)).arg(burned_value(receipt));
        let committed: i64 = self.burn(key(nonce), call, |c: &i64| *c == 1).await?;
        Ok(committed == 1)
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

    async fn state(&self, nonce: &Nonce) -> Result<LinkState, LedgerError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key(nonce));
        let value: Option<String> = self
            .redis
            .run(OP_TIMEOUT, move |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        Ok(value.as_deref().map_or(LinkState::Unused, parse_state))
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
    /// `{burnlink:stats}` slot). Two commands whatever the number of links, no scan; on a
    /// cluster the two are not one snapshot, so the gauge may be off by the links that came
    /// or went in between. Keys that are neither (another application sharing the database)
    /// would be counted: give the ledger a database of its own.
    async fn entries(&self) -> Result<u64, LedgerError> {
        let all: u64 = self
            .redis
            .run(OP_TIMEOUT, |mut c| async move {
                redis::cmd("DBSIZE").query_async(&mut c).await
            })
            .await?;
        let stats = crate::stats::RedisStats::key_count(&self.redis).await?;
        Ok(all.saturating_sub(stats))
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
    }
}

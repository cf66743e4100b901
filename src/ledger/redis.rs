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

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};

use super::memory::RETAIN_AFTER_EXPIRY_S;
use super::{Acquire, Ledger, LedgerError, LinkState, Owner, Receipt, Revoke};
use crate::token::Nonce;

/// How long one ledger call may take in all, connecting included. A Redis that hangs must not
/// hang transfers: past this they answer 503 and the client retries.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a lazily connecting, self-reconnecting handle: nothing is sent until the first call,
/// so a replica starts even when Redis is down at boot (its `/readyz` fails until Redis is up).
/// Only a malformed URL is an error here.
pub fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(800)))
        .set_response_timeout(Some(Duration::from_millis(1000)))
        // One quick retry per reconnect: a request during an outage fails fast with 503, and
        // the next request tries again, so service resumes as soon as Redis is back.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Runs one Redis call under [`OP_TIMEOUT`], with every failure as `Unavailable` (fail closed).
pub(crate) async fn bounded<T>(
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LedgerError> {
    bounded_by(OP_TIMEOUT, call).await
}

pub(crate) async fn bounded_by<T>(
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, LedgerError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LedgerError::Unavailable(format!("redis: {e}"))),
        Err(_) => Err(LedgerError::Unavailable(format!(
            "redis: no answer within {limit:?}"
        ))),
    }
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
    conn: ConnectionManager,
}

impl RedisLedger {
    pub fn new(conn: ConnectionManager) -> Self {
        RedisLedger { conn }
    }

    fn conn(&self) -> ConnectionManager {
        // A cheap clone of a handle to one multiplexed connection.
        self.conn.clone()
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
        let mut conn = self.conn();
        let previous: Option<String> = bounded(
            redis::cmd("SET")
                .arg(key(nonce))
                .arg(value)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ms)
                .query_async(&mut conn),
        )
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
        let mut conn = self.conn();
        let ms = lifetime.as_millis().max(1) as u64;
        let mut call = RENEW.key(key(nonce));
        call.arg(owner_tag(owner)).arg(ms);
        let renewed: i64 = bounded(call.invoke_async(&mut conn)).await?;
        Ok(renewed == 1)
    }

    async fn commit(
        &self,
        nonce: &Nonce,
        owner: Owner,
        receipt: Option<Receipt>,
    ) -> Result<bool, LedgerError> {
        let mut conn = self.conn();
        let mut call = COMMIT.key(key(nonce));
        call.arg(owner_tag(owner)).arg(burned_value(receipt));
        let committed: i64 = bounded(call.invoke_async(&mut conn)).await?;
        Ok(committed == 1)
    }

    async fn release(&self, nonce: &Nonce, owner: Owner) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let mut call = RELEASE.key(key(nonce));
        call.arg(owner_tag(owner));
        let _: i64 = bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn revoke(&self, nonce: &Nonce, expires_at: u64) -> Result<Revoke, LedgerError> {
        let mut conn = self.conn();
        let mut call = REVOKE.key(key(nonce));
        call.arg(retain_until(expires_at));
        let answer: String = bounded(call.invoke_async(&mut conn)).await?;
        Ok(match answer.as_str() {
            "U" => Revoke::AlreadyUsed,
            "R" => Revoke::AlreadyRevoked,
            _ => Revoke::Revoked,
        })
    }

    async fn state(&self, nonce: &Nonce) -> Result<LinkState, LedgerError> {
        let mut conn = self.conn();
        let value: Option<String> =
            bounded(redis::cmd("GET").arg(key(nonce)).query_async(&mut conn)).await?;
        Ok(value.as_deref().map_or(LinkState::Unused, parse_state))
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let pong: Value = bounded(redis::cmd("PING").query_async(&mut conn)).await?;
        match pong {
            Value::SimpleString(_) | Value::BulkString(_) => Ok(()),
            other => Err(LedgerError::Unavailable(format!(
                "redis: unexpected PING answer {other:?}"
            ))),
        }
    }

    /// Keys in the ledger's database (`DBSIZE`): links in flight, burned or revoked, plus the
    /// few statistics keys when stats share the database. One command, no scan.
    async fn entries(&self) -> Result<u64, LedgerError> {
        let mut conn = self.conn();
        bounded(redis::cmd("DBSIZE").query_async(&mut conn)).await
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

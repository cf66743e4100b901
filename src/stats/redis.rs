//! Statistics in Redis, so `GET /api/download/stats` counts across replicas.
//!
//! The same bookkeeping as [`super::MemoryStats`], per session: totals `minted` and `used`,
//! links still in their lifetime bucketed by expiry second (`m:{s}`, `u:{s}` fields, with the
//! seconds in a sorted set), and buckets folded into `xm`/`xu` (expired minted/used) once their
//! second has passed. Each record or fold is one Lua script, so replicas counting at once
//! never lose an increment.
//!
//! All stats keys carry the hash tag `{burnlink:stats}` because a record script touches the
//! session registry and the session's keys together: on a Redis Cluster they share one slot.
//! They are a few small keys per session and never on the transfer path's critical step.
//!
//! The keys are always exactly `{burnlink:stats}:sessions` plus two per registered session
//! (its counters hash and its expiry set, which keeps an `end` member at `+inf` so it never
//! empties and vanishes), so [`RedisStats::key_count`] knows how many there are without a
//! scan, and the ledger's entry count can leave them out.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;

use super::{Statistics, StatsStore};
use crate::ledger::redis::{OP_TIMEOUT, RedisHandle};
use crate::ledger::{Answer, LedgerError};

/// A record waits at most this long: minting never fails for stats, and should not be slowed
/// much by a Redis that hangs either (a refused connection fails at once).
const RECORD_TIMEOUT: Duration = Duration::from_millis(500);

const SESSIONS: &str = "{burnlink:stats}:sessions";

/// `KEYS`: registry, counters, expiry set. `ARGV`: member, `m`|`u`, expiry second.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('SADD', KEYS[1], ARGV[1])
          redis.call('ZADD', KEYS[3], '+inf', 'end')
          redis.call('HINCRBY', KEYS[2], ARGV[2] == 'm' and 'minted' or 'used', 1)
          local folded = tonumber(redis.call('HGET', KEYS[2], 'fu') or '0')
          if tonumber(ARGV[3]) <= folded then
            redis.call('HINCRBY', KEYS[2], 'x' .. ARGV[2], 1)
          else
            redis.call('HINCRBY', KEYS[2], ARGV[2] .. ':' .. ARGV[3], 1)
            redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
          end
          return 0",
    )
});

/// `KEYS`: counters, expiry set. `ARGV`: now (unix s). Folds passed buckets, returns
/// minted, used, expired minted, expired used. Writes nothing for a session that never
/// recorded anything (it would leave an unregistered key behind).
static FOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local now = tonumber(ARGV[1])
          local folded = tonumber(redis.call('HGET', KEYS[1], 'fu') or '0')
          if now > folded and redis.call('EXISTS', KEYS[1]) == 1 then
            for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
              local m = tonumber(redis.call('HGET', KEYS[1], 'm:' .. s) or '0')
              local u = tonumber(redis.call('HGET', KEYS[1], 'u:' .. s) or '0')
              redis.call('HINCRBY', KEYS[1], 'xm', m)
              redis.call('HINCRBY', KEYS[1], 'xu', u)
              redis.call('HDEL', KEYS[1], 'm:' .. s, 'u:' .. s)
            end
            redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
            redis.call('HSET', KEYS[1], 'fu', now)
          end
          return redis.call('HMGET', KEYS[1], 'minted', 'used', 'xm', 'xu')",
    )
});

/// `KEYS`: registry. How many statistics keys exist: the registry and two per session.
static KEY_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(r"return redis.call('EXISTS', KEYS[1]) + 2 * redis.call('SCARD', KEYS[1])")
});

pub struct RedisStats {
    redis: RedisHandle,
}

impl RedisStats {
    pub fn new(redis: RedisHandle) -> Self {
        RedisStats { redis }
    }

    /// The number of statistics keys, in O(1) (one script on the stats slot's node). Sessions
    /// registered by a version before the `end` member lack their expiry set until their next
    /// record; the count is then high by one per such session.
    pub async fn key_count(redis: &RedisHandle) -> Result<u64, LedgerError> {
        let call = KEY_COUNT.key(SESSIONS);
        redis
            .run(OP_TIMEOUT, move |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await
    }

    async fn record(
        &self,
        session: Option<&str>,
        kind: &str,
        expires_at: u64,
    ) -> Result<(), LedgerError> {
        let member = member(session);
        let mut call = RECORD.key(SESSIONS);
        call.key(counters_key(&member))
            .key(expiries_key(&member))
            .arg(&member)
            .arg(kind)
            .arg(expires_at);
        let _: i64 = self
            .redis
            .run(RECORD_TIMEOUT, move |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn fold(&self, member: &str, now_unix: u64) -> Result<Statistics, LedgerError> {
        let mut call = FOLD.key(counters_key(member));
        call.key(expiries_key(member)).arg(now_unix);
        let counts: Vec<Option<u64>> = self
            .redis
            .run(OP_TIMEOUT, move |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let get = |i: usize| counts.get(i).copied().flatten().unwrap_or(0);
        Ok(statistics(get(0), get(1), get(2), get(3)))
    }
}

/// The registry's name for a session; the root sandbox is `/`, which no session id can be.
fn member(session: Option<&str>) -> String {
    match session {
        None => "/".to_string(),
        Some(s) => format!("s:{s}"),
    }
}

fn counters_key(member: &str) -> String {
    format!("{{burnlink:stats}}:c:{member}")
}

fn expiries_key(member: &str) -> String {
    format!("{{burnlink:stats}}:z:{member}")
}

/// The same arithmetic as the memory store: a use of an expired link is not also "expired".
fn statistics(minted: u64, used: u64, expired_minted: u64, expired_used: u64) -> Statistics {
    let expired = expired_minted.saturating_sub(expired_used);
    Statistics {
        total_tokens: minted,
        used_tokens: used,
        expired_tokens: expired,
        active_tokens: minted.saturating_sub(used).saturating_sub(expired),
    }
}

#[async_trait]
impl StatsStore for RedisStats {
    async fn record_mint(&self, session: Option<&str>, expires_at: u64) -> Result<(), LedgerError> {
        self.record(session, "m", expires_at).await
    }

    fn record_use<'a>(
        &'a self,
        session: Option<&'a str>,
        expires_at: u64,
    ) -> Answer<'a, Result<(), LedgerError>> {
        Answer::later(self.record(session, "u", expires_at))
    }

    async fn snapshot(
        &self,
        session: Option<Option<&str>>,
        now_unix: u64,
    ) -> Result<Statistics, LedgerError> {
        let members = match session {
            Some(s) => vec![member(s)],
            None => {
                self.redis
                    .run(OP_TIMEOUT, |mut c| async move {
                        ::redis::cmd("SMEMBERS")
                            .arg(SESSIONS)
                            .query_async::<Vec<String>>(&mut c)
                            .await
                    })
                    .await?
            }
        };
        let mut total = Statistics::default();
        for m in members {
            let s = self.fold(&m, now_unix).await?;
            total.total_tokens += s.total_tokens;
            total.active_tokens += s.active_tokens;
            total.used_tokens += s.used_tokens;
            total.expired_tokens += s.expired_tokens;
        }
        Ok(total)
    }
}

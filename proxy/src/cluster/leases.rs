//! Places of an account's fleet-wide limit, leased from Redis (control plane, tokio; never on
//! a worker's path). Each node holds a lease per account: a key of its own,
//! `siplb:{<account>}:node:<node>`, whose value is the places it holds and which expires after
//! the lease time unless renewed, so a dead node's places come back by themselves (Redis 7.0
//! has no per-field expiry, hence a key per node and account). The account's set of nodes,
//! `siplb:{<account>}:nodes`, lets one server-side script add up the fleet's leases and grant
//! places only while the total stays under the limit; the `{<account>}` hash tag keeps every
//! key of an account in one Redis Cluster slot, so the script runs on one master.

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};
use std::sync::Arc;
use std::time::Duration;

/// Node ARGV[1], which holds ARGV[6] places of the account (its own count, authoritative),
/// asks for up to ARGV[2] more under limit ARGV[3]: the other nodes' leases are added up
/// (those expired dropped from the set), the grant fits under the limit, and the node's lease
/// (KEYS[2]) is set to what it holds now, for ARGV[4] ms. The set of nodes lives at least
/// twice the longest lease of its members. When the node gets fewer places than it asked for,
/// the account is marked short (KEYS[3]) for a lease time: nodes holding spare places of it
/// give them back. Returns the places granted, those the fleet has left after the grant, and
/// how long ago (ms) the account was marked short (-1: it is not), and how far the fleet is
/// over the limit with what this node holds.
const ACQUIRE: &str = r#"
local nodes, mine = KEYS[1], KEYS[2]
local node, want, limit, ttl, prefix, held = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local others = 0
for _, n in ipairs(redis.call('SMEMBERS', nodes)) do
  if n ~= node then
    local v = redis.call('GET', prefix .. n)
    if v then others = others + tonumber(v) else redis.call('SREM', nodes, n) end
  end
end
local grant = math.max(0, math.min(want, limit - others - held))
local short_ms = -1
local pttl = redis.call('PTTL', KEYS[3])
if pttl > 0 then short_ms = math.max(0, ttl - pttl) end
if grant < want and pttl <= 0 then redis.call('SET', KEYS[3], '1', 'PX', ttl) end
redis.call('SADD', nodes, node)
redis.call('SET', mine, held + grant, 'PX', ttl)
if redis.call('PTTL', nodes) < ttl * 2 then redis.call('PEXPIRE', nodes, ttl * 2) end
return {grant, math.max(0, limit - others - held - grant), short_ms, math.max(0, others + held - limit)}
"#;

/// Sets node ARGV[1]'s lease (KEYS[2]) to ARGV[2] places for ARGV[3] ms: a renewal, a
/// release (fewer places) or, after a restart, the places of the calls it still has.
const SET: &str = r#"
local nodes, mine = KEYS[1], KEYS[2]
local node, held, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SADD', nodes, node)
redis.call('SET', mine, held, 'PX', ttl)
if redis.call('PTTL', nodes) < ttl * 2 then redis.call('PEXPIRE', nodes, ttl * 2) end
return held
"#;

/// The fleet's total of ARGV[1]'s leases (KEYS[1], key prefix ARGV[1]).
const TOTAL: &str = r#"
local total = 0
for _, n in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. n)
  if v then total = total + tonumber(v) end
end
return total
"#;

/// What one acquire got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u32,
    /// Places the fleet has left after the grant.
    pub free: u32,
    /// How long the account has been marked short (a node got fewer places than it asked
    /// for), if it is.
    pub short_since_ms: Option<u64>,
    /// Places the fleet holds over the limit, this node's included.
    pub over: u32,
}

/// One node's leases, over a connection to a Redis server or cluster.
#[derive(Clone)]
pub struct Leases<C> {
    conn: C,
    node: Arc<str>,
    lease_ms: u64,
    acquire: Arc<Script>,
    set: Arc<Script>,
    total: Arc<Script>,
}

/// A key every node keeps set while it leases: when it is gone, the server lost the fleet's
/// leases (restarted without persistence, or flushed).
const KEPT_KEY: &str = "siplb:fleet";

fn nodes_key(account: &str) -> String {
    format!("siplb:{{{account}}}:nodes")
}

fn short_key(account: &str) -> String {
    format!("siplb:{{{account}}}:short")
}

fn prefix(account: &str) -> String {
    format!("siplb:{{{account}}}:node:")
}

impl<C: ConnectionLike> Leases<C> {
    /// Leases for `node` over `conn`, each kept for `lease` unless renewed.
    pub fn new(conn: C, node: &str, lease: Duration) -> Leases<C> {
        Leases {
            conn,
            node: node.into(),
            lease_ms: lease.as_millis().max(1) as u64,
            acquire: Arc::new(Script::new(ACQUIRE)),
            set: Arc::new(Script::new(SET)),
            total: Arc::new(Script::new(TOTAL)),
        }
    }

    /// Up to `want` more places of `account` for this node, which holds `held` now, as long
    /// as the fleet holds no more than `limit`: how many were granted (0 when the fleet is
    /// full). The lease is set to `held` + the grant (so a lease that had expired, or a
    /// renewal racing this, never leaves the fleet undercounted) and renewed.
    pub async fn acquire(
        &mut self,
        account: &str,
        held: u32,
        want: u32,
        limit: u32,
    ) -> RedisResult<u32> {
        Ok(self
            .acquire_and_free(account, held, want, limit)
            .await?
            .granted)
    }

    /// [`acquire`](Self::acquire), with what the fleet has left after the grant.
    pub async fn acquire_and_free(
        &mut self,
        account: &str,
        held: u32,
        want: u32,
        limit: u32,
    ) -> RedisResult<Grant> {
        let prefix = prefix(account);
        self.acquire
            .key(nodes_key(account))
            .key(format!("{prefix}{}", self.node))
            .key(short_key(account))
            .arg(&*self.node)
            .arg(want)
            .arg(limit)
            .arg(self.lease_ms)
            .arg(&prefix)
            .arg(held)
            .invoke_async(&mut self.conn)
            .await
            .map(
                |(granted, free, short_ms, over): (u32, u32, i64, u32)| Grant {
                    granted,
                    free,
                    short_since_ms: u64::try_from(short_ms).ok(),
                    over,
                },
            )
    }

    /// Sets this node's lease of `account` to `held` places (a renewal, or places given
    /// back), for another lease time.
    pub async fn set(&mut self, account: &str, held: u32) -> RedisResult<()> {
        let prefix = prefix(account);
        let _: u32 = self
            .set
            .key(nodes_key(account))
            .key(format!("{prefix}{}", self.node))
            .arg(&*self.node)
            .arg(held)
            .arg(self.lease_ms)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Whether a node got fewer places of `account` than it asked for, within a lease time:
    /// spare places should go back.
    pub async fn short(&mut self, account: &str) -> RedisResult<bool> {
        let v: Option<String> = redis::cmd("GET")
            .arg(short_key(account))
            .query_async(&mut self.conn)
            .await?;
        Ok(v.is_some())
    }

    /// Whether the server still has the fleet's leases: [`KEPT_KEY`] is there.
    pub async fn kept(&mut self) -> RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(KEPT_KEY)
            .query_async(&mut self.conn)
            .await
    }

    /// Says the fleet's leases are on the server (after this node's are: a node that finds
    /// it then knows they are counted).
    pub async fn keep(&mut self) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(KEPT_KEY)
            .arg(1)
            .query_async(&mut self.conn)
            .await
    }

    /// The places the whole fleet holds of `account`.
    pub async fn total(&mut self, account: &str) -> RedisResult<u32> {
        self.total
            .key(nodes_key(account))
            .arg(prefix(account))
            .invoke_async(&mut self.conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_account_is_in_its_hash_tag() {
        // Redis Cluster hashes only what is inside the first `{…}`: the account.
        assert_eq!(nodes_key("acct001"), "siplb:{acct001}:nodes");
        assert_eq!(prefix("acct001") + "edge-1", "siplb:{acct001}:node:edge-1");
    }
}

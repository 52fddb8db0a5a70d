//! What the workers share of the fleet's limits: per account, the places this node has leased
//! from Redis and how many of them calls hold. A worker takes a leased place with one atomic
//! compare-and-swap, next to the account's local count; only when none is spare does it ask
//! the lease task ([`super::task`]) for more, through a bounded queue, and park the INVITE
//! until the answer comes back in its own reply queue. No lock and no I/O on a worker's path
//! but the first call of an account (the map's write lock).

use crossbeam_queue::ArrayQueue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// One account's places on this node: leased (`high 32 bits`) and taken by calls (`low`).
/// Both change together, so a give-back never takes a place a call is taking.
#[derive(Debug, Default)]
pub struct Lease {
    pub account: Box<[u8]>,
    state: AtomicU64,
    /// Unix ms of the last place taken: spares of a quiet account go back.
    pub last_take_ms: AtomicU64,
    /// The account's fleet-wide limit, as last asked with.
    pub limit: AtomicU32,
    /// Set by the lease task when the fleet is near the account's limit: places are leased
    /// one at a time and each one a call gives back goes back to the fleet.
    pub near: AtomicBool,
    /// Places the fleet had left at the last answer from Redis.
    pub free: AtomicU32,
    /// Restored calls to end: the fleet had no places for them ([`Answer::EndOver`]).
    pub to_end: AtomicU32,
}

/// The time now, unix ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn pack(leased: u32, taken: u32) -> u64 {
    (leased as u64) << 32 | taken as u64
}

fn unpack(s: u64) -> (u32, u32) {
    ((s >> 32) as u32, s as u32)
}

impl Lease {
    /// (leased, taken).
    pub fn get(&self) -> (u32, u32) {
        unpack(self.state.load(Ordering::Acquire))
    }

    /// Takes a spare leased place for a new call.
    pub fn try_take(&self, now_ms: u64) -> bool {
        let ok = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (leased, taken) = unpack(s);
                (taken < leased).then(|| pack(leased, taken + 1))
            })
            .is_ok();
        if ok {
            self.last_take_ms.store(now_ms, Ordering::Relaxed);
        }
        ok
    }

    /// A call's place is free again (it stays leased: a spare, see [`Fleet::put_back`]).
    fn put_back(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (leased, taken) = unpack(s);
                Some(pack(leased, taken.saturating_sub(1)))
            });
    }

    /// A place taken by a call that exists already (restored after a restart): leased and
    /// taken, for the lease task to lease from the fleet at its next renewal.
    pub fn restore_taken(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (leased, taken) = unpack(s);
                Some(pack(leased.saturating_add(1), taken.saturating_add(1)))
            });
    }

    /// One call of the account to end, if any is left to end.
    pub fn take_one_to_end(&self) -> bool {
        self.to_end
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// `n` more places leased.
    pub fn grant(&self, n: u32) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (leased, taken) = unpack(s);
                Some(pack(leased.saturating_add(n), taken))
            });
    }

    /// Gives the spares back but `keep` of them: what stays leased (never below what calls
    /// hold).
    pub fn trim(&self, keep: u32) -> u32 {
        let before = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let (leased, taken) = unpack(s);
                let to = leased.min(taken.saturating_add(keep));
                (to != leased).then(|| pack(to, taken))
            });
        match before {
            Ok(s) => {
                let (leased, taken) = unpack(s);
                leased.min(taken.saturating_add(keep))
            }
            Err(s) => unpack(s).0,
        }
    }
}

impl PartialEq for Lease {
    fn eq(&self, other: &Lease) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Lease {}

/// A worker's request for places of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub account: Box<[u8]>,
    /// The account's limit, fleet-wide.
    pub limit: u32,
}

/// The lease task's answer to the INVITEs parked for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Places were leased (or are spare): admit again.
    Granted,
    /// The fleet holds the whole limit: the limit reply.
    Full,
    /// Redis cannot be reached and the policy is to fail closed: 503 with Retry-After.
    Unavailable,
    /// Calls restored after a restart that the fleet has no places for: workers end
    /// (BYE to both sides) answered calls of the account while the lease's `to_end` lasts.
    EndOver,
}

/// Why a call got no fleet place at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Asked for: park the INVITE until the answer.
    Asked,
    /// The request queue is full: 503 with Retry-After.
    Busy,
}

/// Every account's lease on this node, and the queues to and from the lease task.
pub struct Fleet {
    accounts: RwLock<HashMap<Box<[u8]>, Arc<Lease>>>,
    /// To the lease task; `limit` 0: give the account's spares back.
    pub requests: ArrayQueue<Request>,
    /// Wakes the lease task (callable from any thread).
    pub wake: tokio::sync::Notify,
    /// Asks the lease task to renew every lease now (set once the workers have restored
    /// the calls of the last run).
    pub renew_now: AtomicBool,
    /// One per worker: answers, by account.
    pub answers: Vec<ArrayQueue<(Box<[u8]>, Answer)>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

/// Requests queued at once (beyond: 503); answers per worker likewise.
const QUEUE: usize = 8192;

impl Fleet {
    pub fn new(workers: usize) -> Fleet {
        Fleet {
            accounts: RwLock::default(),
            requests: ArrayQueue::new(QUEUE),
            wake: tokio::sync::Notify::new(),
            renew_now: AtomicBool::new(false),
            answers: (0..workers).map(|_| ArrayQueue::new(QUEUE)).collect(),
        }
    }

    /// The lease of `account`, made on first use.
    pub fn lease(&self, account: &[u8]) -> Arc<Lease> {
        if let Some(l) = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(account)
        {
            return l.clone();
        }
        self.accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(account.into())
            .or_insert_with(|| {
                Arc::new(Lease {
                    account: account.into(),
                    ..Lease::default()
                })
            })
            .clone()
    }

    /// A place of `account` (limit `limit` fleet-wide) for a new call: the lease it is taken
    /// from, or what to do while there is none.
    pub fn take(&self, account: &[u8], limit: u32, now_ms: u64) -> Result<Arc<Lease>, Wait> {
        let lease = self.lease(account);
        lease.limit.store(limit, Ordering::Relaxed);
        if lease.try_take(now_ms) {
            return Ok(lease);
        }
        let r = Request {
            account: account.into(),
            limit,
        };
        self.requests.push(r).map_err(|_| Wait::Busy)?;
        self.wake.notify_one();
        Err(Wait::Asked)
    }

    /// A call of `lease`'s account has ended: its place is spare, and goes back to the fleet
    /// at once when the fleet is near the limit.
    pub fn put_back(&self, lease: &Lease) {
        lease.put_back();
        if lease.near.load(Ordering::Relaxed) {
            let r = Request {
                account: lease.account.clone(),
                limit: 0,
            };
            // A full queue: the spare goes back at the next renewal.
            if self.requests.push(r).is_ok() {
                self.wake.notify_one();
            }
        }
    }

    /// The leases for which `f` holds, taken under the read lock without copying the
    /// accounts' names (the lease task looks at them every 100 ms).
    pub fn leases_where(&self, mut f: impl FnMut(&Lease) -> bool) -> Vec<Arc<Lease>> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|l| f(l))
            .cloned()
            .collect()
    }

    /// Places leased over all accounts.
    pub fn leased_total(&self) -> u64 {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|l| l.get().0 as u64)
            .sum()
    }

    /// Every account's lease.
    pub fn snapshot(&self) -> Vec<(Box<[u8]>, Arc<Lease>)> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets accounts that hold and lease nothing.
    pub fn forget_idle(&self) {
        self.accounts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, l| Arc::strong_count(l) > 1 || l.get() != (0, 0));
    }

    /// Tells every worker (those with INVITEs parked for `account` act on it).
    pub fn answer(&self, account: &[u8], answer: Answer) {
        for q in &self.answers {
            // A full queue: that worker's parked INVITEs time out into a 503.
            let _ = q.push((account.into(), answer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_only_while_leased_and_trimmed_to_what_calls_hold() {
        let l = Lease::default();
        assert!(!l.try_take(1));
        l.grant(3);
        assert!(l.try_take(1) && l.try_take(2));
        assert_eq!(l.get(), (3, 2));
        assert_eq!(l.trim(0), 2, "the spare goes back");
        assert!(!l.try_take(3));
        Fleet::new(1).put_back(&l);
        assert_eq!(l.get(), (2, 1));
        assert_eq!(l.trim(5), 2, "keeping more than leased changes nothing");
        assert_eq!(l.trim(0), 1);
    }

    #[test]
    fn a_call_without_a_spare_place_asks_and_a_full_queue_says_busy() {
        let f = Fleet::new(2);
        assert_eq!(f.take(b"a", 20, 0).unwrap_err(), Wait::Asked);
        assert_eq!(
            f.requests.pop(),
            Some(Request {
                account: (*b"a").into(),
                limit: 20
            })
        );
        f.lease(b"a").grant(1);
        let held = f.take(b"a", 20, 0).unwrap();
        assert_eq!(held.get(), (1, 1));
        while f
            .requests
            .push(Request {
                account: (*b"x").into(),
                limit: 1,
            })
            .is_ok()
        {}
        assert_eq!(f.take(b"a", 20, 0).unwrap_err(), Wait::Busy);
    }

    #[test]
    fn answers_reach_every_worker_and_idle_accounts_are_forgotten() {
        let f = Fleet::new(2);
        f.answer(b"a", Answer::Full);
        assert_eq!(f.answers[1].pop().unwrap().1, Answer::Full);
        let l = f.lease(b"a");
        f.forget_idle();
        assert_eq!(f.snapshot().len(), 1, "held by someone");
        drop(l);
        f.forget_idle();
        assert!(f.snapshot().is_empty());
    }
}

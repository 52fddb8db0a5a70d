//! Statistics: per-worker counters written by one thread and read by any, and their names.
//!
//! Each worker owns a [`ShardStats`]; only that worker writes it, so a counter is bumped with
//! a relaxed load and store (no locked instruction). Readers sum over workers.

pub mod names;
pub mod prometheus;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed)
    }

    /// A counter written by several threads (rare paths only).
    #[inline]
    pub fn inc_shared(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

macro_rules! shard_stats {
    ($( $(#[$doc:meta])* $field:ident => $name:expr ),* $(,)?) => {
        /// The counters of one worker.
        #[derive(Debug, Default)]
        pub struct ShardStats {
            $( $(#[$doc])* pub $field: Counter, )*
            /// Latencies recorded (the count of the Prometheus summary; not a statistic of
            /// `siplb ctl`, which has the percentiles).
            pub latency_count: Counter,
            /// Their sum, in ns (the summary's `_sum`).
            pub latency_sum_ns: Counter,
        }

        impl ShardStats {
            /// `(group:name, value)` for every counter, in declaration order.
            pub fn each(&self, mut f: impl FnMut(&'static str, u64)) {
                $( f($name, self.$field.get()); )*
            }
        }
    };
}

shard_stats! {
    /// Requests received (parsed).
    rcv_requests => names::CORE_RCV_REQUESTS,
    /// Responses received (parsed).
    rcv_replies => names::CORE_RCV_REPLIES,
    /// Requests forwarded (retransmissions excluded: they are `retransmissions`).
    fwd_requests => names::CORE_FWD_REQUESTS,
    /// Responses forwarded.
    fwd_replies => names::CORE_FWD_REPLIES,
    /// Requests dropped (ACK without a call, bad input that cannot be answered).
    drop_requests => names::CORE_DROP_REQUESTS,
    /// Responses dropped (no matching transaction, not ours, malformed).
    drop_replies => names::CORE_DROP_REPLIES,
    /// Responses passed on with the request's Vias put back: they had none below siplb's.
    replies_vias_restored => names::CORE_VIAS_RESTORED,
    /// A gateway's 2xx to an INVITE attempt siplb no longer had, acknowledged.
    orphan_2xx => names::CORE_ORPHAN_2XX,
    /// BYEs siplb sent to end such an attempt (once per attempt).
    orphan_byes => names::CORE_ORPHAN_BYES,
    /// Datagrams that failed to parse.
    bad_msg => names::CORE_BAD_MSG_HDR,
    /// Replies siplb generated itself (100 excluded).
    local_replies => names::SL_SENT_REPLIES,
    /// 403 replies sent (unknown source, preloaded Route, INVITE from a gateway); an ACK from
    /// such a source is dropped, not counted here.
    forbidden => names::CORE_FORBIDDEN,
    /// New INVITEs refused with 503 + Retry-After because a queue or table was full.
    overload_503 => names::CORE_OVERLOAD_503,
    /// Datagrams received by this worker and handed to the owner worker.
    hand_offs => names::CORE_HAND_OFFS,
    /// Hand-offs dropped because the owner's queue was full.
    hand_off_drops => names::CORE_HAND_OFF_DROPS,
    /// Request and response retransmissions absorbed or answered from the transaction.
    retrans_absorbed => names::TM_RETRANS_ABSORBED,
    /// Retransmissions siplb sent (Timers A, E, G).
    retransmissions => names::TM_RETRANSMISSIONS,
    /// Transactions created.
    transactions => names::TM_CREATED,
    /// Requests sent again with credentials after a gateway's 401/407.
    auth_resends => names::UAC_AUTH_RESENDS,
    /// Challenges of a gateway siplb has credentials for that went to the caller unanswered.
    auth_failures => names::UAC_AUTH_FAILURES,
    /// INVITEs sent on to the next gateway of their set (a timeout, 408 or failover code).
    failovers => names::DISPATCHER_FAILOVERS,
    /// INVITE client transactions that timed out (Timer B): 408 upstream.
    timeouts => names::TM_TIMEOUTS,
    /// Datagrams larger than a receive buffer (truncated; answered 513 when they can be).
    truncated => names::CORE_TRUNCATED,
    /// Datagrams received through the worker's AF_XDP socket.
    xsk_rx => names::XDP_XSK_RX,
    /// Datagrams sent through the worker's AF_XDP socket.
    xsk_tx => names::XDP_XSK_TX,
    /// Frames the AF_XDP socket received that were not a datagram for siplb (damaged).
    xsk_rx_bad => names::XDP_XSK_RX_BAD,
    /// Of those, requests answered `513 Message Too Large` from the part that arrived.
    too_large_513 => names::CORE_TOO_LARGE_513,
    /// Requests that came back to siplb unchanged (a loop), answered `482 Loop Detected`.
    loops_482 => names::CORE_LOOPS_482,
    /// Responses to a forwarded request from an address it was not sent to, dropped.
    resp_wrong_source => names::CORE_RESP_WRONG_SOURCE,
    /// Transaction records held, open ones and those waiting out their RFC 3261 timers after
    /// the final response (a gauge, refreshed by the worker after each batch).
    inuse_transactions => names::TM_INUSE,
    /// Dialog records held, not ended ones and ended ones lingering (a gauge, as above).
    call_records => names::CORE_CALL_RECORDS,
    /// Memory the open transactions hold, as `limits.transaction_mb_per_worker` counts it
    /// (a gauge, as above).
    transaction_bytes => names::CORE_TRANSACTION_BYTES,
    /// Dialogs not ended (a gauge, refreshed by the worker after each batch).
    active_dialogs => names::DIALOG_ACTIVE,
    /// Dialogs not answered yet (a gauge, as above).
    early_dialogs => names::DIALOG_EARLY,
    /// Dialogs in state 1, 2, 3 and 4 (gauges, as above; `dlg.stats_active`'s names).
    dialogs_starting => names::DIALOG_STARTING,
    dialogs_connecting => names::DIALOG_CONNECTING,
    dialogs_answering => names::DIALOG_ANSWERING,
    dialogs_ongoing => names::DIALOG_ONGOING,
    /// Dialogs created.
    processed_dialogs => names::DIALOG_PROCESSED,
    /// Dialogs ended by `default_timeout` or `noack_timeout` (BYE sent to both sides).
    expired_dialogs => names::DIALOG_EXPIRED,
    /// Dialogs whose INVITE failed (non-2xx final, CANCEL, timeout).
    failed_dialogs => names::DIALOG_FAILED,
    /// INVITEs refused by a profile limit.
    limits_rejected => names::LIMITS_REJECTED,
    /// Of those, refused because their value was new and the value table full.
    limits_account_table_full => names::LIMITS_ACCOUNT_TABLE_FULL,
    /// New INVITEs refused with 503 + Retry-After because accounting had no room for the
    /// records of another call (a full record queue, a stalled sink, a full spool).
    acc_queue_full_503 => names::ACC_QUEUE_FULL_503,
    cluster_parked => names::CLUSTER_PARKED,
    cluster_unavailable_503 => names::CLUSTER_UNAVAILABLE_503,
    /// Accounting records made (transaction, rule and CDR records).
    acc_records => names::ACC_RECORDS,
    /// Call log lines not written: over `log.calls_per_second`.
    log_dropped_lines => names::LOG_DROPPED_LINES,
    /// Median kernel-receive-to-processed time in µs since start (refreshed every second).
    latency_p50_us => names::CORE_LATENCY_P50_US,
    /// 99th percentile of the same.
    latency_p99_us => names::CORE_LATENCY_P99_US,
    /// Largest of the same.
    latency_max_us => names::CORE_LATENCY_MAX_US,
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_is_documented() {
        let doc = include_str!("../../../docs/METRICS.md");
        let names = include_str!("names.rs");
        let missing: Vec<&str> = names
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|n| !doc.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "statistics missing from docs/METRICS.md: {missing:?}"
        );
    }
}

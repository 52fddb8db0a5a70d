//! Every statistic name, as `group:name`. Kamailio's names where Kamailio has the statistic;
//! siplb's own in the groups `core:`, `limits:`, `xdp:`, `events:`, `log:` and `cluster:`. `docs/METRICS.md` lists them.

pub const CORE_RCV_REQUESTS: &str = "core:rcv_requests";
pub const CORE_RCV_REPLIES: &str = "core:rcv_replies";
pub const CORE_FWD_REQUESTS: &str = "core:fwd_requests";
pub const CORE_FWD_REPLIES: &str = "core:fwd_replies";
pub const CORE_DROP_REQUESTS: &str = "core:drop_requests";
pub const CORE_DROP_REPLIES: &str = "core:drop_replies";
pub const CORE_VIAS_RESTORED: &str = "core:vias_restored";
pub const CORE_ORPHAN_2XX: &str = "core:orphan_2xx";
pub const CORE_ORPHAN_BYES: &str = "core:orphan_byes";
pub const CORE_BAD_MSG_HDR: &str = "core:bad_msg_hdr";
pub const CORE_FORBIDDEN: &str = "core:forbidden";
pub const CORE_OVERLOAD_503: &str = "core:overload_503";
pub const CORE_HAND_OFFS: &str = "core:hand_offs";
pub const CORE_HAND_OFF_DROPS: &str = "core:hand_off_drops";
pub const CORE_TRUNCATED: &str = "core:truncated";
pub const CORE_TOO_LARGE_513: &str = "core:too_large_513";
pub const CORE_LOOPS_482: &str = "core:loops_482";
pub const CORE_RESP_WRONG_SOURCE: &str = "core:resp_wrong_source";
pub const CORE_STEERING_BPF: &str = "core:steering_bpf";
pub const CORE_DRAINING: &str = "core:draining";
pub const SL_SENT_REPLIES: &str = "sl:sent_replies";
pub const TM_RETRANS_ABSORBED: &str = "tmx:retrans_absorbed";
pub const TM_RETRANSMISSIONS: &str = "tmx:retransmissions";
pub const TM_CREATED: &str = "tmx:created_transactions";
pub const TM_TIMEOUTS: &str = "tmx:timeouts";
pub const TM_INUSE: &str = "tmx:inuse_transactions";
pub const CORE_CALL_RECORDS: &str = "core:call_records";
pub const CORE_TRANSACTION_BYTES: &str = "core:transaction_bytes";
pub const DIALOG_ACTIVE: &str = "dialog:active_dialogs";
pub const DIALOG_EARLY: &str = "dialog:early_dialogs";
pub const DIALOG_STARTING: &str = "dialog:starting";
pub const DIALOG_CONNECTING: &str = "dialog:connecting";
pub const DIALOG_ANSWERING: &str = "dialog:answering";
pub const DIALOG_ONGOING: &str = "dialog:ongoing";
pub const DIALOG_PROCESSED: &str = "dialog:processed_dialogs";
pub const DIALOG_EXPIRED: &str = "dialog:expired_dialogs";
pub const DIALOG_FAILED: &str = "dialog:failed_dialogs";
pub const DIALOG_JOURNAL_WRITTEN: &str = "dialog:journal_written";
pub const DIALOG_JOURNAL_DROPPED: &str = "dialog:journal_dropped";
pub const LIMITS_REJECTED: &str = "limits:rejected";
pub const LIMITS_ACCOUNT_TABLE_FULL: &str = "limits:account_table_full";
pub const XDP_ATTACHED: &str = "xdp:attached";
pub const XDP_SEEN: &str = "xdp:seen";
pub const XDP_PASSED: &str = "xdp:passed";
pub const XDP_DROP_NOT_SIP: &str = "xdp:drop_not_sip";
pub const XDP_DROP_FLOOD: &str = "xdp:drop_flood";
pub const XDP_DROP_BLOCKED: &str = "xdp:drop_blocked";
pub const XDP_REDIRECTED: &str = "xdp:redirected";
pub const XDP_REDIRECTED_XSK: &str = "xdp:redirected_xsk";
pub const XDP_REDIRECTED_XSK_QUEUE: &str = "xdp:redirected_xsk_queue";
pub const XDP_XSK_RX: &str = "xdp:xsk_rx";
pub const XDP_XSK_TX: &str = "xdp:xsk_tx";
pub const XDP_XSK_RX_BAD: &str = "xdp:xsk_rx_bad";
pub const EVENTS_WRITTEN: &str = "events:written";
pub const EVENTS_DROPPED: &str = "events:dropped";
pub const EVENTS_HTTP_FAILED: &str = "events:http_failed";
pub const EVENTS_HTTP_QUEUED: &str = "events:http_queued";
pub const LOG_DROPPED_LINES: &str = "log:dropped_lines";
pub const UAC_AUTH_RESENDS: &str = "uac:auth_resends";
pub const UAC_AUTH_FAILURES: &str = "uac:auth_failures";
pub const DISPATCHER_FAILOVERS: &str = "dispatcher:failovers";
pub const ACC_RECORDS: &str = "acc:records";
pub const ACC_WRITTEN: &str = "acc:written";
pub const ACC_SINK_ERRORS: &str = "acc:sink_errors";
pub const ACC_TORN_LINES: &str = "acc:torn_lines";
pub const ACC_SPOOL_RECORDS: &str = "acc:spool_records";
pub const ACC_REJECTED_RECORDS: &str = "acc:rejected_records";
pub const ACC_QUEUED: &str = "acc:queued";
pub const ACC_QUEUE_FULL_503: &str = "acc:queue_full_503";
pub const CLUSTER_LEASE_ROUND_TRIPS: &str = "cluster:lease_round_trips";
pub const CLUSTER_DEGRADED_S: &str = "cluster:degraded_s";
pub const CLUSTER_DEGRADED: &str = "cluster:degraded";
pub const CLUSTER_LEASED: &str = "cluster:leased";
pub const CLUSTER_LEASED_DEGRADED: &str = "cluster:leased_degraded";
pub const CLUSTER_PARKED: &str = "cluster:parked";
pub const CLUSTER_UNAVAILABLE_503: &str = "cluster:unavailable_503";
pub const CORE_LATENCY_P50_US: &str = "core:latency_p50_us";
pub const CORE_LATENCY_P99_US: &str = "core:latency_p99_us";
pub const CORE_LATENCY_MAX_US: &str = "core:latency_max_us";

/// Statistics that are per-worker gauges of a distribution: read as the highest worker's
/// value, not the sum.
pub const MAX_OF_WORKERS: &[&str] = &[
    CORE_LATENCY_P50_US,
    CORE_LATENCY_P99_US,
    CORE_LATENCY_MAX_US,
];

/// Statistics that are gauges (a level, not a count of events): Prometheus type `gauge`, no
/// `_total`.
pub const GAUGES: &[&str] = &[
    ACC_SPOOL_RECORDS,
    ACC_QUEUED,
    EVENTS_HTTP_QUEUED,
    TM_INUSE,
    CORE_CALL_RECORDS,
    CORE_TRANSACTION_BYTES,
    CORE_STEERING_BPF,
    CORE_DRAINING,
    CLUSTER_DEGRADED,
    CLUSTER_LEASED,
    XDP_ATTACHED,
    DIALOG_ACTIVE,
    DIALOG_EARLY,
    DIALOG_STARTING,
    DIALOG_CONNECTING,
    DIALOG_ANSWERING,
    DIALOG_ONGOING,
    CORE_LATENCY_P50_US,
    CORE_LATENCY_P99_US,
    CORE_LATENCY_MAX_US,
];

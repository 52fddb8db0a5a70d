//! Numbers the configuration bounds, and mistakes of form: each named with its key (or
//! table) and its own line.

use super::tests::{MIN, parse};

/// The error of [`MIN`] followed by an empty line and `tail` (whose first line is then
/// line 13).
fn error_after_min(tail: &str) -> String {
    parse(&format!("{MIN}\n{tail}")).unwrap_err().to_string()
}

#[test]
fn wrong_type_is_an_error() {
    let e = error_after_min("[workers]\ncount = \"two\"\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `workers.count`: invalid type: string \"two\", expected a whole number (0 or more)"
    );
}

#[test]
fn a_zero_timer_is_reported_at_its_own_line() {
    // MIN ends at line 11, then an empty line: `[timers]` is line 13, `t1_ms` line 14.
    let e = error_after_min("[timers]\nt1_ms = 0\n");
    assert_eq!(e, "/etc/siplb/t.toml:14: `timers.t1_ms`: must be > 0");
    let e = error_after_min("[timers]\nt1_ms = 500\nt2_ms = 100\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:15: `timers.t2_ms`: t2_ms (100) must be >= t1_ms (500)"
    );
    let e = error_after_min("[timers]\nt1_ms = 5000\n");
    assert!(e.starts_with("/etc/siplb/t.toml:14: `timers.t1_ms`"), "{e}");
    let e = error_after_min("[dialog]\nearly_timeout_s = 0\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `dialog.early_timeout_s`: must be > 0"
    );
    let e = error_after_min("[workers]\nrecv_buffers = 500\n");
    assert!(
        e.starts_with("/etc/siplb/t.toml:14: `workers.recv_buffers`"),
        "{e}"
    );
}

#[test]
fn worker_counts_and_buffer_sizes_out_of_bounds_name_key_and_line() {
    let e = error_after_min("[workers]\nrecv_buffer_size = 0\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `workers.recv_buffer_size`: 0 bytes: must be 1500 to 65536"
    );
    let e = error_after_min("[workers]\nrecv_buffer_size = 100000\n");
    assert!(
        e.starts_with("/etc/siplb/t.toml:14: `workers.recv_buffer_size`"),
        "{e}"
    );
    let e = error_after_min("[workers]\npin = true\ncount = 100000\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:15: `workers.count`: 100000: at most 1024 (0: one per core)"
    );
    let c = parse(&format!(
        "{MIN}\n[workers]\ncount = 3\nrecv_buffer_size = 1500\n"
    ))
    .unwrap();
    assert_eq!(c.workers, 3);
    assert_eq!(c.recv_buffer_size, 1500);
}

#[test]
fn limits_mistakes_are_reported_at_their_own_line() {
    let e = error_after_min("[limits]\nretry_after_s = 5\nqueue_per_worker = 0\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:15: `limits.queue_per_worker`: must be at least 1"
    );
    let e = error_after_min("[limits]\ntransaction_mb_per_worker = 0\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `limits.transaction_mb_per_worker`: must be at least 1"
    );
    let e = error_after_min("[limits]\nreply_reason = \"a\\r\\nb\"\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `limits.reply_reason`: must be one line"
    );
}

/// Customers are known by name (reloads match them by it): two of one name are refused at the
/// second's name.
#[test]
fn a_second_customer_of_one_name_is_refused_at_its_name() {
    let e = error_after_min("[[customer]]\nname = \"local\"\nsources = [\"10.0.0.1/32\"]\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `customer.name`: a second customer named `local`"
    );
}

#[test]
fn a_table_defined_twice_is_named_at_its_second_header() {
    let e = error_after_min("[timers]\nt1_ms = 500\n\n[timers]\nt2_ms = 4000\n");
    assert!(e.starts_with("/etc/siplb/t.toml:16: `[timers]`: "), "{e}");
}

/// Every number that sizes memory or is added to a clock has an upper bound: one above it
/// (and the largest TOML integer) is an error naming the key at its line, the bound itself
/// is taken. Before, `dialog.default_timeout_s = 9223372036854775807` was taken and the
/// first answered call overflowed the clock in a worker, and a queue or table of a few
/// zeros too many tried to allocate it all at start.
#[test]
fn numbers_that_size_memory_or_set_a_timer_have_an_upper_bound() {
    const BIG: u64 = i64::MAX as u64;
    let redis = "[cluster]\nredis = [\"redis://127.0.0.1:6379\"]\n";
    // (text before the key, the key's line, its name in the error, the key as written, max)
    let cases: &[(&str, usize, &str, &str, u64)] = &[
        ("[timers]\n", 14, "timers.t2_ms", "t2_ms", 60_000),
        ("[timers]\n", 14, "timers.t4_ms", "t4_ms", 60_000),
        (
            "[timers]\n",
            14,
            "timers.timer_b_ms",
            "timer_b_ms",
            86_400_000,
        ),
        (
            "[timers]\n",
            14,
            "timers.timer_c_ms",
            "timer_c_ms",
            86_400_000,
        ),
        (
            "[timers]\n",
            14,
            "timers.timer_d_ms",
            "timer_d_ms",
            86_400_000,
        ),
        (
            "[timers]\n",
            14,
            "timers.call_linger_ms",
            "call_linger_ms",
            86_400_000,
        ),
        (
            "[dialog]\n",
            14,
            "dialog.default_timeout_s",
            "default_timeout_s",
            31_536_000,
        ),
        (
            "[dialog]\n",
            14,
            "dialog.early_timeout_s",
            "early_timeout_s",
            31_536_000,
        ),
        (
            "[dialog]\n",
            14,
            "dialog.noack_timeout_s",
            "noack_timeout_s",
            31_536_000,
        ),
        (
            "[limits]\n",
            14,
            "limits.queue_per_worker",
            "queue_per_worker",
            1 << 20,
        ),
        (
            "[limits]\n",
            14,
            "limits.account_table",
            "account_table",
            1 << 22,
        ),
        (
            "[limits]\n",
            14,
            "limits.value_table",
            "value_table",
            1 << 22,
        ),
        (
            "[limits]\n",
            14,
            "limits.transaction_mb_per_worker",
            "transaction_mb_per_worker",
            1 << 20,
        ),
        ("[events]\n", 14, "events.queue", "queue", 1 << 20),
        ("[workers]\n", 14, "workers.batch", "batch", 1024),
        (
            "[shutdown]\n",
            14,
            "shutdown.bye_wait_ms",
            "bye_wait_ms",
            86_400_000,
        ),
        (
            "",
            13,
            "gateway_set.probe_interval_ms",
            "probe_interval_ms",
            86_400_000,
        ),
        (
            "",
            13,
            "gateway_set.probe_timeout_ms",
            "probe_timeout_ms",
            86_400_000,
        ),
        (
            "",
            13,
            "gateway_set.failover_timeout_ms",
            "failover_timeout_ms",
            86_400_000,
        ),
        (redis, 15, "cluster.lease_ms", "lease_ms", 86_400_000),
        (redis, 15, "cluster.quiet_ms", "quiet_ms", 86_400_000),
        (redis, 15, "cluster.wait_ms", "wait_ms", 86_400_000),
        ("[acc]\n", 14, "acc.queue", "queue", 1 << 20),
        (
            "[acc]\n",
            14,
            "acc.rotate_interval_s",
            "rotate_interval_s",
            31_536_000,
        ),
    ];
    for &(before, line, name, key, max) in cases {
        for too_big in [max + 1, BIG] {
            let e = error_after_min(&format!("{before}{key} = {too_big}\n"));
            let unit = ["_ms", "_s"]
                .iter()
                .find(|u| key.ends_with(*u))
                .map_or("", |u| &u[1..]);
            assert_eq!(
                e,
                format!(
                    "/etc/siplb/t.toml:{line}: `{name}`: {too_big}{unit} is too large: \
                     at most {max}{unit}"
                ),
            );
        }
        let ok = format!("{MIN}\n{before}{key} = {max}\n");
        if let Err(e) = parse(&ok) {
            panic!("{name} = {max} is refused: {e}");
        }
    }
    for key in ["flood_rate", "flood_burst"] {
        let e = error_after_min(&format!("[steering]\n{key} = 10000001\n"));
        assert_eq!(
            e,
            format!(
                "/etc/siplb/t.toml:14: `steering.{key}`: 10000001 is too large: at most 10000000"
            )
        );
        let ok = format!("{MIN}\n[steering]\n{key} = 10000000\n");
        assert!(parse(&ok).is_ok(), "{key} = 10000000 is refused");
    }
    let e = error_after_min("[workers]\nbatch = 0\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `workers.batch`: must be at least 1"
    );
}

#[test]
fn xdp_interfaces_is_refused_until_it_is_used() {
    let e = parse(&format!(
        "{MIN}\n[steering]\nxdp_interfaces = [\"nosuch0\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("/etc/siplb/t.toml:14: `steering.xdp_interfaces`: `nosuch0`: not used"),
        "{e}"
    );
    assert!(parse(&format!("{MIN}\n[steering]\nxdp_interfaces = []\n")).is_ok());
}

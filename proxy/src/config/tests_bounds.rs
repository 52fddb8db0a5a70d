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
        "/etc/siplb/t.toml:14: `count`: invalid type: string \"two\", expected usize"
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
    let e = error_after_min("[limits]\nreply_reason = \"a\\r\\nb\"\n");
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `limits.reply_reason`: must be one line"
    );
}

#[test]
fn a_table_defined_twice_is_named_at_its_second_header() {
    let e = error_after_min("[timers]\nt1_ms = 500\n\n[timers]\nt2_ms = 4000\n");
    assert!(e.starts_with("/etc/siplb/t.toml:16: `[timers]`: "), "{e}");
}

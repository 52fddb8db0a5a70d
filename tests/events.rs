//! The `Call_End` HTTP sink against endpoints that misbehave: one that never answers must hold
//! up neither the calls nor the stop, and one that redirects must not get a GET instead of
//! the POST. The real binary, sipp, a real HTTP server or a listening socket nothing reads.

use siplb_tests::*;
use std::net::TcpListener;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// A config on `net` whose events go to `events.jsonl` and are POSTed to `url`.
fn events_config(net: Net, url: &str) -> String {
    config(
        net,
        1,
        &format!("[events]\nfile = \"events.jsonl\"\nhttp_post = \"{url}\"\n"),
    )
}

/// Runs `calls` answered calls through `siplb` on `net` (gateways answering, 200 ms hold).
fn calls(dir: &TempDir, net: Net, calls: u32) {
    let (uas1, uas2) = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    let uac = Sipp::caller(&dir.0, net, "uac.xml", calls, 20, &["-d", "200"], 60);
    uas1.finish();
    uas2.finish();
    assert_eq!(
        (uac.ok(), uac.failed()),
        (calls.into(), 0),
        "uac: {:?}",
        uac.fields
    );
}

/// siplb on `net`, in a new folder named after `tag`, posting its events to `url`.
fn start(tag: &str, net: Net, url: &str) -> (TempDir, Siplb) {
    let dir = TempDir::new(tag);
    let siplb = Siplb::start(BIN, &dir.0, &events_config(net, url));
    (dir, siplb)
}

/// siplb on `net` with an endpoint that accepts connections and never answers, after 10
/// calls: every event is in the file and most still wait for the poster (2 s per POST).
fn with_a_hung_endpoint(tag: &str, net: Net) -> (TempDir, Siplb, TcpListener) {
    require_sipp();
    let addr = format!("{}:8080", net.ip());
    // Never accepted: the kernel completes the connections and keeps what is sent.
    let hung = TcpListener::bind(&addr).expect("bind the endpoint");
    let (dir, mut siplb) = start(tag, net, &format!("http://{addr}/call_end"));
    calls(&dir, net, 10);
    siplb.assert_alive();
    siplb.wait_stat("events:written", 10, "10 events written");
    let queued = siplb.stat("events:http_queued");
    assert!(queued > 0, "events wait for the hung endpoint: {queued}");
    (dir, siplb, hung)
}

fn sigterm(siplb: &Siplb) {
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(siplb.pid() as i32, libc::SIGTERM) };
}

/// An endpoint that never answers does not hold up the stop: the poster gets 2 s once the
/// writer has ended, and what it did not POST is counted and said. (Before, it tried every
/// queued event, 2 s each: 10 events kept the process up for 20 s, and its address locked.)
#[test]
fn a_hung_event_endpoint_does_not_hold_up_the_stop() {
    let _g = serial();
    let net = Net::new(22);
    let (dir, mut siplb, _hung) = with_a_hung_endpoint("events-hung", net);
    sigterm(&siplb);
    let status = siplb.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "stopped within 10 s, status 0: {status:?}\n{}",
        siplb.log()
    );
    let log = siplb.log();
    assert!(
        log.contains("not POSTed to") && log.contains("events:http_failed"),
        "{log}"
    );
    let file = std::fs::read_to_string(dir.0.join("events.jsonl")).expect("event file");
    assert_eq!(file.lines().count(), 10, "every event in the file: {file}");
}

/// A second SIGTERM while the stop is under way ends the process at once, with status 1.
#[test]
fn a_second_sigterm_ends_the_stop_at_once() {
    let _g = serial();
    let net = Net::new(23);
    let (_dir, mut siplb, _hung) = with_a_hung_endpoint("events-again", net);
    sigterm(&siplb);
    // The stop now waits for the POST in flight (up to 2 s), then 2 s more.
    std::thread::sleep(Duration::from_millis(300));
    assert!(siplb.wait_exit(Duration::ZERO).is_none(), "still stopping");
    sigterm(&siplb);
    let status = siplb.wait_exit(Duration::from_secs(1));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "ended by the second signal\n{}",
        siplb.log()
    );
    assert!(
        siplb.log().contains("again: exiting now"),
        "{}",
        siplb.log()
    );
}

/// A redirect is not followed (an HTTP client that follows a 307 or 302 may turn the POST
/// into a GET, and the event is lost): every event is a failure, and the redirect's target
/// gets no request.
#[test]
fn a_redirecting_event_endpoint_counts_failures_and_is_not_followed() {
    let _g = serial();
    require_sipp();
    let net = Net::new(24);
    let (from, to) = (format!("{}:8080", net.ip()), format!("{}:8081", net.ip()));
    let target = HttpSink::start(&to);
    let redirecting = HttpSink::answering(&from, 307, Some(&format!("http://{to}/moved")));
    let (dir, mut siplb) = start("events-redirect", net, &format!("http://{from}/call_end"));
    calls(&dir, net, 5);
    siplb.assert_alive();
    siplb.wait_stat(
        "events:http_failed",
        5,
        "5 POSTs answered 307 counted as failed",
    );
    assert_eq!(redirecting.bodies().len(), 5, "5 POSTs to the endpoint");
    assert!(
        target.bodies().is_empty(),
        "the redirect was followed: {:?}",
        target.bodies()
    );
    assert_eq!(siplb.stat("events:http_queued"), 0);
}

//! What an operator meets on day one, through the real binary: one instance per address,
//! signals, packaging.

use siplb_tests::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// Runs siplb with `config` until it exits (at most 10 s): its status and what it printed.
fn run_to_exit(config: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siplb");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the second siplb kept running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// A second siplb on the same address (its config differs only in its control socket) stops
/// with "address already in use", as it does when sipp holds the port; the first keeps its
/// traffic and its control socket.
#[test]
fn a_second_instance_on_the_same_address_is_refused() {
    let _g = serial();
    let net = Net::new(75);
    let dir = TempDir::new("second-instance");
    let mut first = Siplb::start(BIN, &dir.0, &config(net, 2, ""));
    let other = dir.0.join("second.toml");
    std::fs::write(
        &other,
        config(net, 2, "").replace("socket = \"siplb.ctl\"", "socket = \"second.ctl\""),
    )
    .expect("write");
    let (status, out) = run_to_exit(&other);
    assert!(!status.success(), "{out}");
    assert!(out.contains("address already in use"), "{out}");
    assert!(
        !dir.0.join("second.ctl").exists(),
        "nothing of the second one stays"
    );

    let caller = udp(&format!("{}:5070", net.ip()));
    let options = format!(
        "OPTIONS sip:ping@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bK-op1\r\n\
         From: <sip:c@{c}>;tag=o1\r\nTo: <sip:ping@{s}>\r\nCall-ID: op1@x\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        s = net.siplb(),
        c = caller.local_addr().unwrap()
    );
    caller.send_to(options.as_bytes(), net.siplb()).unwrap();
    let replies = drain(&caller, Duration::from_millis(300));
    assert_eq!(replies.len(), 1, "the first siplb still answers");
    assert_eq!(first.stat("core:rcv_requests"), 1);
    first.assert_alive();
}

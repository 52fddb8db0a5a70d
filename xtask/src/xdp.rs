//! The XDP guard's drop rate for a junk flood (`cargo xtask bench-xdp`) and the flood sender
//! it runs in a network namespace (`cargo xtask flood-send`).

use crate::{build_release_siplb, output, root, run};
use anyhow::Result;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends 64-byte junk datagrams to `dst` for `secs` seconds, as fast as one thread can; prints
/// how many. Run inside a network namespace by `bench-xdp`.
pub fn flood_send(dst: std::net::SocketAddr, secs: f64) -> Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(dst)?;
    let junk = [0x16u8; 64];
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            if sock.send(&junk).is_ok() {
                sent += 1;
            }
        }
    }
    println!("{sent}");
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// The XDP guard's drop rate for a junk flood: siplb in one namespace, the sender in another,
/// over a veth pair (198.18.60.0/24), native mode then generic.
pub fn bench_xdp() -> Result<()> {
    let root = root();
    build_release_siplb(&root)?;
    let (a, b) = ("siplb-bx-a", "siplb-bx-b");
    let work = root.join("target/bench-xdp");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let cleanup = || {
        for ns in [a, b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    };
    cleanup();
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for mode in ["native", "generic"] {
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&[
            "link", "add", "sbxa", "type", "veth", "peer", "name", "sbxb",
        ])?;
        ip(&["link", "set", "sbxa", "netns", a])?;
        ip(&["link", "set", "sbxb", "netns", b])?;
        ip(&["-n", a, "addr", "add", "198.18.60.1/24", "dev", "sbxa"])?;
        ip(&["-n", b, "addr", "add", "198.18.60.2/24", "dev", "sbxb"])?;
        for (ns, dev) in [(a, "sbxa"), (b, "sbxb")] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        let cfg = work.join(format!("{mode}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[listen]\nsip = [\"198.18.60.2:5060\"]\n[workers]\ncount = 2\npin = false\n\
                 [steering]\nmode = \"bpf\"\nxdp_mode = \"{mode}\"\n[control]\nsocket = \"{mode}.ctl\"\n\
                 [[customer]]\nname = \"c\"\nsources = [\"198.18.60.1/32\"]\n\
                 [[gateway_set]]\nname = \"t\"\ngateways = [\"198.18.60.2:5081\"]\n"
            ),
        )?;
        let mut siplb = Command::new("ip")
            .args(["netns", "exec", b])
            .arg(root.join("target/release/siplb"))
            .arg("--config")
            .arg(&cfg)
            .stderr(std::fs::File::create(work.join(format!("{mode}.log")))?)
            .spawn()?;
        let ctl = |verb: &str| -> u64 {
            output(
                Command::new(root.join("target/release/siplb"))
                    .args(["ctl", "--config"])
                    .arg(&cfg)
                    .args(["stats.get_statistics", verb]),
            )
            .rsplit(" = ")
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
        };
        std::thread::sleep(Duration::from_secs(2));
        let secs = 5.0;
        let before = ctl("xdp:drop_not_sip");
        let sent: u64 = output(
            Command::new("ip")
                .args(["netns", "exec", a])
                .arg(&me)
                .args(["flood-send", "198.18.60.2:5060", &secs.to_string()]),
        )
        .parse()
        .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(500));
        let dropped = ctl("xdp:drop_not_sip") - before;
        let attached = ctl("xdp:attached");
        let bad = ctl("core:bad_msg_hdr");
        let _ = Command::new("kill").arg(siplb.id().to_string()).status();
        let _ = siplb.wait();
        cleanup();
        rows.push((mode, attached, sent, dropped, bad, secs));
    }
    println!(
        "\n64-byte junk datagrams to the SIP port, one sender thread, 5 s, veth pair, 2 cores\n"
    );
    println!(
        "| XDP mode | attached | sent | dropped in XDP | dropped per second | reached siplb |"
    );
    println!("|---|---|---|---|---|---|");
    for (mode, attached, sent, dropped, bad, secs) in rows {
        println!(
            "| {mode} | {attached} | {sent} | {dropped} | {:.0} | {bad} |",
            dropped as f64 / secs
        );
    }
    Ok(())
}

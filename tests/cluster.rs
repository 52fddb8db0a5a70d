//! A fleet of two siplb nodes sharing account limits through one real `redis-server` started by
//! the test: the real binary on `examples/limits.toml` with a `[cluster]` table, sipp callers
//! and gateways per node, `siplb ctl` to sample each node's profile sizes.

use siplb_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// `examples/limits.toml` on `net` as fleet member `node` of Redis `redis`, with account
/// limit `limit`, and `cluster` keys added to `[cluster]`.
fn member(net: Net, node: &str, redis: &str, limit: u32, cluster: &str) -> String {
    let src = std::fs::read_to_string(repo().join("examples/limits.toml")).expect("limits.toml");
    let src = src
        .replace("127.0.0.1:5062", &net.siplb())
        .replace("127.0.0.1", &net.ip())
        .replace(
            "socket = \"/tmp/siplb-limits.ctl\"",
            "socket = \"siplb.ctl\"",
        )
        .replace(
            "count = 0            # one per core, each pinned",
            "count = 2\npin = false",
        )
        .replace("mode = \"auto\"", "mode = \"off\"\nhash_key = 12345")
        .replace("max = 5", &format!("max = {limit}"));
    assert!(src.contains("count = 2"), "limits.toml changed shape");
    let (head, cluster_example) = src
        .split_once("# [cluster]")
        .expect("limits.toml shows its [cluster] table");
    assert!(cluster_example.contains("# redis = "));
    format!(
        "node = \"{node}\"\n{head}\n[cluster]\nredis = [\"{redis}\"]\nlease_ms = 1000\n\
         block = 4\n{cluster}\n"
    )
}

/// A sipp `-inf` file: every call from account `A`.
fn account_a(dir: &Path) -> String {
    let p = dir.join("a.csv");
    std::fs::write(&p, "SEQUENTIAL\nA;5550100;\n").expect("write csv");
    p.to_str().expect("utf-8").into()
}

fn size_of_a(siplb: &Siplb) -> u64 {
    let out = siplb
        .ctl(&["dlg.profile_get_size", "account", "A"])
        .unwrap_or_else(|e| panic!("profile size: {e}"));
    out.trim().parse().expect("a number")
}

struct Node {
    net: Net,
    dir: TempDir,
    siplb: Siplb,
    _uas: (Sipp, Sipp),
}

fn node(net: Net, name: &str, redis: &str, limit: u32, cluster: &str) -> Node {
    let dir = TempDir::new(&format!("cluster-{name}"));
    let siplb = Siplb::start(BIN, &dir.0, &member(net, name, redis, limit, cluster));
    let uas = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    Node {
        net,
        dir,
        siplb,
        _uas: uas,
    }
}

/// `calls` calls of account A through `n`, held `hold_ms`.
fn calls(n: &Node, calls: u32, rate: u32, hold_ms: u32) -> SippStats {
    let inf = account_a(&n.dir.0);
    let hold = hold_ms.to_string();
    Sipp::caller(
        &n.dir.0,
        n.net,
        "uac.xml",
        calls,
        rate,
        &["-inf", &inf, "-d", &hold],
        60,
    )
}

/// Account limit 20, 100 long calls over both nodes: exactly 20 answered fleet-wide, and the
/// two nodes' `account` sizes never add up to more than 20 when sampled meanwhile.
#[test]
fn two_nodes_answer_exactly_the_fleet_limit_of_100_calls() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-redis");
    let a = node(Net::new(111), "a", &redis.url, 20, "");
    let b = node(Net::new(112), "b", &redis.url, 20, "");
    let (ra, rb, most) = std::thread::scope(|s| {
        let ca = s.spawn(|| calls(&a, 50, 15, 8000));
        let cb = s.spawn(|| calls(&b, 50, 15, 8000));
        let mut most = 0;
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            most = most.max(size_of_a(&a.siplb) + size_of_a(&b.siplb));
            std::thread::sleep(Duration::from_millis(20));
        }
        (ca.join().expect("a"), cb.join().expect("b"), most)
    });
    assert_eq!(
        ra.ok() + rb.ok(),
        20,
        "answered fleet-wide: {} + {}",
        ra.ok(),
        rb.ok()
    );
    assert_eq!(ra.failed() + rb.failed(), 80);
    assert!(most <= 20, "sampled fleet size {most}");
    assert!(most >= 15, "the samples saw the calls up: {most}");
    let (sa, sb) = (a.siplb.stats(), b.siplb.stats());
    assert_eq!(sa["limits:rejected"] + sb["limits:rejected"], 80);
    assert!(sa["cluster:lease_round_trips"] > 0 && sb["cluster:lease_round_trips"] > 0);
    assert_eq!(sa["cluster:degraded_s"] + sb["cluster:degraded_s"], 0);
}

/// A node killed with 10 calls up: its places stay taken until its lease expires, then the
/// other node may use them.
#[test]
fn a_killed_nodes_places_come_back_after_the_lease_time() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-kill");
    let mut a = node(Net::new(113), "a", &redis.url, 20, "");
    let b = node(Net::new(114), "b", &redis.url, 20, "");
    std::thread::scope(|s| {
        // a's sipp gives up on its calls 14 s in (siplb is gone by then).
        let inf = account_a(&a.dir.0);
        let (a_dir, a_net) = (a.dir.0.clone(), a.net);
        let ca = s.spawn(move || {
            Sipp::caller(
                &a_dir,
                a_net,
                "uac.xml",
                10,
                20,
                &["-inf", &inf, "-d", "12000"],
                14,
            )
        });
        let until = Instant::now() + Duration::from_secs(10);
        while size_of_a(&a.siplb) < 10 {
            assert!(Instant::now() < until, "a's calls did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rb = calls(&b, 15, 50, 2000);
        assert_eq!(rb.ok(), 10, "b gets the 10 places a does not hold");
        assert_eq!(rb.failed(), 5);
        // SAFETY: killing the siplb this test started, by its PID.
        unsafe { libc::kill(a.siplb.pid() as i32, libc::SIGKILL) };
        a.siplb.wait_exit(Duration::from_secs(5)).expect("killed");
        // The lease time (1 s), and some.
        std::thread::sleep(Duration::from_millis(1500));
        let rb = calls(&b, 25, 50, 2000);
        assert_eq!(rb.ok(), 20, "a's places are b's now");
        assert_eq!(rb.failed(), 5);
        let _ = ca.join();
    });
}

//! A fleet of two siplb nodes sharing account limits through one real `redis-server` started by
//! the test: the real binary on `examples/limits.toml` with a `[cluster]` table, sipp callers
//! and gateways per node, `siplb ctl` to sample each node's profile sizes.

use siplb_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// `examples/limits.toml` on `net` as fleet member `node` of Redis `redis`, with account
/// limit `limit`, and `cluster` keys added to `[cluster]`.
fn member(net: Net, node: &str, redis: &[String], limit: u32, cluster: &str) -> String {
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
    let redis: Vec<String> = redis.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "node = \"{node}\"\n{head}\n[cluster]\nredis = [{}]\nlease_ms = 1000\n\
         block = 4\n{cluster}\n",
        redis.join(", ")
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

/// Waits (at most `within`) until `f` holds.
fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Node {
    net: Net,
    dir: TempDir,
    /// Its configuration, to start it again.
    text: String,
    siplb: Siplb,
    _uas: (Sipp, Sipp),
}

fn node(net: Net, name: &str, redis: &[String], limit: u32, cluster: &str) -> Node {
    node_with(net, name, redis, limit, cluster, false)
}

/// With `journal`: the restart journal in the node's folder, dialogs left up at a stop.
fn node_with(
    net: Net,
    name: &str,
    redis: &[String],
    limit: u32,
    cluster: &str,
    journal: bool,
) -> Node {
    let dir = TempDir::new(&format!("cluster-{name}-{}", net.ip[2]));
    let mut text = member(net, name, redis, limit, cluster);
    if journal {
        text = text.replacen("[dialog]\n", "[dialog]\njournal_dir = \"journal\"\n", 1)
            + "\n[shutdown]\ndialogs = \"leave\"\n";
        assert!(text.contains("journal_dir"), "limits.toml changed shape");
    }
    let siplb = Siplb::start(BIN, &dir.0, &text);
    let uas = (
        Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]),
        Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]),
    );
    Node {
        net,
        dir,
        text,
        siplb,
        _uas: uas,
    }
}

/// Two fleet members, `a` and `b`, on `nets`, with account limit 20.
fn pair(redis: &[String], nets: (u8, u8), cluster: &str) -> (Node, Node) {
    (
        node(Net::new(nets.0), "a", redis, 20, cluster),
        node(Net::new(nets.1), "b", redis, 20, cluster),
    )
}

/// Kills `n`'s siplb (SIGKILL, by its PID) and waits for it to be gone.
fn kill_9(n: &mut Node) {
    // SAFETY: killing the siplb this test started, by its PID.
    unsafe { libc::kill(n.siplb.pid() as i32, libc::SIGKILL) };
    n.siplb.wait_exit(Duration::from_secs(5)).expect("killed");
}

/// `calls` calls of account A through `n`, held `hold_ms`.
fn calls(n: &Node, calls: u32, rate: u32, hold_ms: u32) -> SippStats {
    calls_from(&n.dir.0, n.net, calls, rate, hold_ms, 60)
}

/// [`calls`] from the caller of `net` with its files in `dir`, sipp giving up `max_s`
/// seconds in.
fn calls_from(dir: &Path, net: Net, calls: u32, rate: u32, hold_ms: u32, max_s: u64) -> SippStats {
    let inf = account_a(dir);
    let hold = hold_ms.to_string();
    Sipp::caller(
        dir,
        net,
        "uac.xml",
        calls,
        rate,
        &["-inf", &inf, "-d", &hold],
        max_s,
    )
}

/// Account limit 20, 100 long calls over both nodes: exactly 20 answered fleet-wide, and the
/// two nodes' `account` sizes never add up to more than 20 when sampled meanwhile.
fn two_nodes_answer_exactly_the_limit(redis: &[String], nets: (u8, u8)) {
    let (a, b) = pair(redis, nets, "");
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
        "answered fleet-wide: {} + {}\n{}\n{}",
        ra.ok(),
        rb.ok(),
        what_happened(&a),
        what_happened(&b)
    );
    assert_eq!(ra.failed() + rb.failed(), 80);
    assert!(most <= 20, "sampled fleet size {most}");
    assert!(most >= 15, "the samples saw the calls up: {most}");
    let (sa, sb) = (a.siplb.stats(), b.siplb.stats());
    assert_eq!(sa["limits:rejected"] + sb["limits:rejected"], 80);
    assert!(sa["cluster:lease_round_trips"] > 0 && sb["cluster:lease_round_trips"] > 0);
    assert_eq!(sa["cluster:degraded_s"] + sb["cluster:degraded_s"], 0);
}

/// For a failed assertion: `n`'s fleet statistics and what its log says of the fleet beyond
/// the calls themselves.
fn what_happened(n: &Node) -> String {
    let stats: std::collections::BTreeMap<_, _> = n.siplb.stats().into_iter().collect();
    let mut out = format!("node on {}:", n.net.ip());
    for (k, v) in stats.iter().filter(|(k, _)| k.starts_with("cluster:")) {
        out += &format!(" {k}={v}");
    }
    for line in n.siplb.log().lines() {
        if !line.contains("siplb::call:") {
            out += &format!("\n  {line}");
        }
    }
    out
}

#[test]
fn two_nodes_answer_exactly_the_fleet_limit_of_100_calls() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-redis");
    two_nodes_answer_exactly_the_limit(std::slice::from_ref(&redis.url), (111, 112));
}

/// The same against a Redis Cluster of three masters: every key of an account is in one
/// slot, so its script runs on one master.
#[test]
fn two_nodes_answer_exactly_the_fleet_limit_through_a_three_master_redis_cluster() {
    let _g = serial();
    require_sipp();
    let redis = RedisCluster::start("cluster-3m", "127.0.119.1", 7001);
    two_nodes_answer_exactly_the_limit(&redis.urls, (120, 121));
}

/// A node killed with 10 calls up: its places stay taken until its lease expires, then the
/// other node may use them.
#[test]
fn a_killed_nodes_places_come_back_after_the_lease_time() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-kill");
    let (mut a, b) = pair(std::slice::from_ref(&redis.url), (113, 114), "");
    std::thread::scope(|s| {
        // a's sipp gives up on its calls 14 s in (siplb is gone by then).
        let (dir, net) = (a.dir.0.clone(), a.net);
        let ca = s.spawn(move || calls_from(&dir, net, 10, 20, 12_000, 14));
        wait_for("a's calls", Duration::from_secs(10), || {
            size_of_a(&a.siplb) == 10
        });
        let rb = calls(&b, 15, 50, 2000);
        assert_eq!(rb.ok(), 10, "b gets the 10 places a does not hold");
        assert_eq!(rb.failed(), 5);
        kill_9(&mut a);
        // The lease time (1 s), and some.
        std::thread::sleep(Duration::from_millis(1500));
        let rb = calls(&b, 25, 50, 2000);
        assert_eq!(rb.ok(), 20, "a's places are b's now");
        assert_eq!(rb.failed(), 5);
        let _ = ca.join();
    });
}

/// A node stalled for longer than its lease time (SIGSTOP: a VM paused, a thread starved of
/// CPU) renews its leases late; it says so, since the fleet may have given its places away.
#[test]
fn a_node_stalled_past_its_lease_time_warns_that_its_leases_expired() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-stall");
    let a = node(Net::new(27), "a", std::slice::from_ref(&redis.url), 20, "");
    std::thread::scope(|s| {
        let ca = s.spawn(|| calls(&a, 3, 20, 5000));
        wait_for("a's calls", Duration::from_secs(10), || {
            size_of_a(&a.siplb) == 3
        });
        let pid = a.siplb.pid() as i32;
        // SAFETY: signals to the siplb this test started, by its PID.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        // The lease time (1 s), and some.
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        wait_for("the warning", Duration::from_secs(5), || {
            a.siplb.log().contains("leases were renewed")
        });
        let log = a.siplb.log();
        let line = log
            .lines()
            .find(|l| l.contains("leases were renewed"))
            .unwrap();
        assert!(
            line.contains("WARN") && line.contains("more than lease_ms (1.0 s)"),
            "{line}"
        );
        assert_eq!(ca.join().expect("a").ok(), 3, "the calls went on");
    });
    // Renewed on time: no such warning.
    assert_eq!(a.siplb.log().matches("leases were renewed").count(), 1);
}

/// The final reply to a raw INVITE from `caller` (account `acct1`) through `siplb`.
fn raw_invite(caller: &std::net::UdpSocket, siplb: &str, call_id: &str) -> Vec<u8> {
    raw_invite_from(caller, siplb, call_id, "acct1")
}

/// [`raw_invite`] from account `user` (the From user).
fn raw_invite_from(
    caller: &std::net::UdpSocket,
    siplb: &str,
    call_id: &str,
    user: &str,
) -> Vec<u8> {
    let me = caller.local_addr().unwrap().to_string();
    let inv = String::from_utf8(invite(&me, siplb, call_id, call_id))
        .expect("text")
        .replace("sip:acct1@", &format!("sip:{user}@"));
    caller.send_to(inv.as_bytes(), siplb).expect("send");
    drain(caller, Duration::from_millis(1500))
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| status_of(m).is_some_and(|s| s >= 200))
        .expect("a final reply")
}

/// `on_redis_down = "closed"`: with Redis stopped, calls on places already leased go on, a
/// call that needs a new lease gets 503 with Retry-After, and the degraded time is counted.
/// Redis back (empty): the nodes lease again with what they hold, and the fleet limit holds.
#[test]
fn with_redis_stopped_a_closed_fleet_refuses_new_leases_and_holds_the_limit_once_back() {
    let _g = serial();
    require_sipp();
    let mut redis = RedisServer::start("cluster-closed");
    let (a, b) = pair(
        std::slice::from_ref(&redis.url),
        (115, 116),
        "quiet_ms = 300",
    );
    std::thread::scope(|s| {
        let ca = s.spawn(|| calls(&a, 6, 20, 15_000));
        wait_for("a's 6 calls", Duration::from_secs(10), || {
            size_of_a(&a.siplb) == 6
        });
        redis.stop();
        let caller = udp(&format!("{}:5077", b.net.ip()));
        let reply = raw_invite(&caller, &b.net.siplb(), "closed-1@x");
        assert_eq!(status_of(&reply), Some(503), "{}", text(&reply));
        assert_eq!(
            header_lines(&reply, "Retry-After").len(),
            1,
            "{}",
            text(&reply)
        );
        assert_eq!(b.siplb.stat("cluster:unavailable_503"), 1);
        wait_for("b degraded for a second", Duration::from_secs(5), || {
            b.siplb.stat("cluster:degraded_s") >= 1 && b.siplb.stat("cluster:degraded") == 1
        });
        assert_eq!(size_of_a(&a.siplb), 6, "a's calls go on");
        redis.restart();
        wait_for("both nodes back on Redis", Duration::from_secs(5), || {
            a.siplb.stat("cluster:degraded") == 0 && b.siplb.stat("cluster:degraded") == 0
        });
        // One lease period, and the wait for the other nodes' leases after Redis lost them
        // (a renewal, 333 ms, and 1.25 s).
        std::thread::sleep(Duration::from_millis(2000));
        let rb = calls(&b, 20, 10, 3000);
        assert_eq!(rb.ok(), 14, "the fleet limit holds: a still has 6");
        assert_eq!(rb.failed(), 6);
        let _ = ca.join();
    });
}

/// Redis back empty while node a, which holds the whole limit, has not told it so yet (its
/// process stopped): node b, back first, finds the fleet's leases lost and leases no new
/// place until a has had time to renew its own (503 with Retry-After meanwhile), instead of
/// granting places a still holds; once a is back, b gets the limit reply.
#[test]
fn redis_back_empty_leases_nothing_new_until_the_other_nodes_renewed() {
    let _g = serial();
    require_sipp();
    let mut redis = RedisServer::start("cluster-lost");
    let (a, b) = pair(
        std::slice::from_ref(&redis.url),
        (119, 120),
        "quiet_ms = 300",
    );
    std::thread::scope(|s| {
        let ca = s.spawn(|| calls(&a, 20, 40, 12_000));
        wait_for("a's 20 calls", Duration::from_secs(10), || {
            size_of_a(&a.siplb) == 20
        });
        // SAFETY: pausing the siplb this test started, by its PID.
        unsafe { libc::kill(a.siplb.pid() as i32, libc::SIGSTOP) };
        redis.restart();
        wait_for("b back on Redis", Duration::from_secs(5), || {
            b.siplb.stat("cluster:degraded") == 0
        });
        let caller = udp(&format!("{}:5077", b.net.ip()));
        let reply = raw_invite_from(&caller, &b.net.siplb(), "lost-1@x", "A");
        // SAFETY: as above.
        unsafe { libc::kill(a.siplb.pid() as i32, libc::SIGCONT) };
        assert_eq!(status_of(&reply), Some(503), "{}", text(&reply));
        assert_eq!(
            header_lines(&reply, "Retry-After").len(),
            1,
            "the wait, not the limit: {}",
            text(&reply)
        );
        assert!(
            b.siplb.log().contains("has lost the fleet's leases"),
            "{}",
            b.siplb.log()
        );
        wait_for("a back on Redis", Duration::from_secs(5), || {
            a.siplb.stat("cluster:degraded") == 0
        });
        std::thread::sleep(Duration::from_millis(2000));
        let reply = raw_invite_from(&caller, &b.net.siplb(), "lost-2@x", "A");
        assert_eq!(
            status_of(&reply),
            Some(503),
            "{}\na: {} calls, log:\n{}\nb's log:\n{}",
            text(&reply),
            size_of_a(&a.siplb),
            a.siplb.log(),
            b.siplb.log()
        );
        assert!(
            text(&reply).contains("Account call limit"),
            "a holds the limit: {}",
            text(&reply)
        );
        assert_eq!(size_of_a(&b.siplb), 0);
        let _ = ca.join();
    });
}

/// `on_redis_down = "open"`: without Redis each node admits up to its share of the limit;
/// once Redis is back the fleet limit holds again.
#[test]
fn with_redis_stopped_an_open_fleet_admits_a_share_of_the_limit_per_node() {
    let _g = serial();
    require_sipp();
    let mut redis = RedisServer::start("cluster-open");
    let open = "on_redis_down = \"open\"\nopen_share = 0.5\nquiet_ms = 300";
    let (a, b) = pair(std::slice::from_ref(&redis.url), (117, 118), open);
    redis.stop();
    std::thread::scope(|s| {
        let ca = s.spawn(|| calls(&a, 15, 20, 12_000));
        wait_for("a's share of the limit", Duration::from_secs(10), || {
            a.siplb.stat("limits:rejected") == 5
        });
        assert_eq!(size_of_a(&a.siplb), 10, "half of 20");
        assert_eq!(a.siplb.stat("cluster:leased_degraded"), 10);
        assert_eq!(a.siplb.stat("cluster:degraded"), 1);
        redis.restart();
        wait_for("a back on Redis", Duration::from_secs(5), || {
            a.siplb.stat("cluster:degraded") == 0
        });
        std::thread::sleep(Duration::from_millis(2000));
        let rb = calls(&b, 15, 10, 3000);
        assert_eq!(rb.ok(), 10, "the fleet limit holds: a has 10");
        assert_eq!(rb.failed(), 5);
        let _ = ca.join();
    });
}

/// A node with the restart journal killed with 10 calls up and started again: it restores
/// them and leases their places again, so the other node still gets only the rest of the
/// limit after the lease time, and the calls end normally through it.
#[test]
fn a_node_back_after_kill_9_leases_the_places_of_its_restored_calls_again() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-restart");
    let urls = std::slice::from_ref(&redis.url);
    let mut a = node_with(Net::new(124), "a", urls, 20, "", true);
    let b = node(Net::new(125), "b", urls, 20, "");
    std::thread::scope(|s| {
        let (dir, net) = (a.dir.0.clone(), a.net);
        let ca = s.spawn(move || calls_from(&dir, net, 10, 20, 8000, 30));
        wait_for(
            "a's calls up and journaled",
            Duration::from_secs(10),
            || a.siplb.stat("dialog:ongoing") == 10 && a.siplb.stat("dialog:journal_written") >= 20,
        );
        kill_9(&mut a);
        let a2 = Siplb::start(BIN, &a.dir.0, &a.text);
        assert_eq!(size_of_a(&a2), 10, "a's calls restored");
        // Past the lease time of a's first run.
        std::thread::sleep(Duration::from_millis(1500));
        let rb = calls(&b, 15, 50, 2000);
        assert_eq!(rb.ok(), 10, "a holds its 10 places again");
        assert_eq!(rb.failed(), 5);
        let ra = ca.join().expect("a's calls");
        assert_eq!(ra.ok(), 10, "a's calls ended normally through its new run");
        drop(a2);
    });
}

/// A node back after kill -9 whose places the other node took meanwhile: it restores its
/// calls, finds the fleet over the limit with them, and ends them with BYE.
#[test]
fn a_node_back_after_kill_9_ends_the_restored_calls_the_fleet_has_no_places_for() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-restart-over");
    let urls = std::slice::from_ref(&redis.url);
    let mut a = node_with(Net::new(126), "a", urls, 20, "", true);
    let b = node(Net::new(127), "b", urls, 20, "");
    std::thread::scope(|s| {
        let (dir, net) = (a.dir.0.clone(), a.net);
        s.spawn(move || calls_from(&dir, net, 10, 20, 20_000, 25));
        wait_for(
            "a's calls up and journaled",
            Duration::from_secs(10),
            || a.siplb.stat("dialog:ongoing") == 10 && a.siplb.stat("dialog:journal_written") >= 20,
        );
        kill_9(&mut a);
        std::thread::sleep(Duration::from_millis(1500));
        // b takes the whole limit while a is away.
        let cb = s.spawn(|| calls(&b, 20, 50, 6000));
        wait_for("b's calls", Duration::from_secs(10), || {
            size_of_a(&b.siplb) == 20
        });
        let a2 = Siplb::start(BIN, &a.dir.0, &a.text);
        wait_for(
            "a to end the calls the fleet has no places for",
            Duration::from_secs(10),
            || size_of_a(&a2) == 0 && a2.stat("dialog:active_dialogs") == 0,
        );
        assert!(
            a2.log()
                .contains("10 restored calls of account A over the fleet's limit"),
            "{}",
            a2.log()
        );
        assert_eq!(size_of_a(&b.siplb), 20, "b's calls go on");
        let rb = cb.join().expect("b");
        assert_eq!(rb.ok(), 20);
        drop(a2);
    });
}

/// A relay in front of the Redis at `url` (a `redis+unix://` socket) that holds every chunk
/// the server sends back for `delay` after it came, as a Redis far away would: its
/// `redis://` URL.
fn slow_relay(url: &str, delay: Duration) -> String {
    use std::io::{Read, Write};
    let path = url
        .strip_prefix("redis+unix://")
        .expect("a unix socket")
        .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = std::os::unix::net::UnixStream::connect(&path) else {
                return;
            };
            let (mut c, mut s) = (
                client.try_clone().expect("dup"),
                server.try_clone().expect("dup"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c, &mut s);
            });
            // Each chunk is due `delay` after it was read (latency, not a queue: chunks read
            // one after the other are not delayed one after the other).
            let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while let Ok(n @ 1..) = server.read(&mut buf) {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            });
            std::thread::spawn(move || {
                for (due, bytes) in rx {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    if client.write_all(&bytes).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

/// 150 INVITEs of 150 accounts at once, through a Redis 25 ms away, then 150 more of 150
/// other accounts while the first 150 leases are renewed (every 333 ms here): the lease task
/// asks for the accounts' places together and renews the leases together, so every INVITE
/// is answered within the lease wait (one round trip after another, 150 of them would take
/// 3.75 s, and most INVITEs would get 503).
#[test]
fn many_accounts_asking_at_once_are_answered_within_the_lease_wait() {
    let _g = serial();
    require_sipp();
    let redis = RedisServer::start("cluster-many");
    let far = slow_relay(&redis.url, Duration::from_millis(25));
    let n = node(Net::new(121), "a", std::slice::from_ref(&far), 20, "");
    let caller = udp(&format!("{}:5077", n.net.ip()));
    let me = caller.local_addr().expect("address").to_string();
    let siplb = n.net.siplb();
    const ACCOUNTS: usize = 150;
    for batch in 0..2 {
        for i in batch * ACCOUNTS..(batch + 1) * ACCOUNTS {
            let call_id = format!("many-{i}@x");
            let inv = String::from_utf8(invite(&me, &siplb, &call_id, &format!("m{i}")))
                .expect("text")
                .replace("sip:acct1@", &format!("sip:acct{i:03}@"));
            caller.send_to(inv.as_bytes(), &siplb).expect("send");
        }
        let mut finals = std::collections::HashMap::<String, u16>::new();
        for (_, m) in drain(&caller, Duration::from_millis(1500)) {
            if let Some(code) = status_of(&m).filter(|c| *c >= 200) {
                let call_id = header_lines(&m, "Call-ID").join("");
                let n: usize = call_id
                    .split_once("many-")
                    .and_then(|(_, r)| r.split('@').next())
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_else(|| panic!("a call of this test: {call_id}"));
                if n / ACCOUNTS == batch {
                    finals.entry(call_id).or_insert(code);
                }
            }
        }
        let mut codes = std::collections::BTreeMap::<u16, usize>::new();
        for code in finals.values() {
            *codes.entry(*code).or_default() += 1;
        }
        assert_eq!(
            codes,
            [(200, ACCOUNTS)].into(),
            "batch {batch}: every account's INVITE answered by the gateway: {:?}\n{}",
            n.siplb.stats(),
            n.siplb.log()
        );
    }
    assert!(n.siplb.stat("cluster:lease_round_trips") >= 2 * ACCOUNTS as u64);
}

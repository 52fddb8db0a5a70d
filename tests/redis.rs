//! Fleet-wide limits, the Redis side (`siplb::cluster::leases`), against a real
//! `redis-server` started by the test on a private Unix socket: the fleet never holds more
//! places than the limit, given-back places go to another node, and a node that stops
//! renewing loses its places after the lease time.

use siplb::cluster::Redis;
use siplb::cluster::leases::Leases;
use siplb_tests::*;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn node(url: &str, name: &str, lease: Duration) -> Leases<Redis> {
    let conn = Redis::connect(&[url.to_string()]).await.expect("connect");
    Leases::new(conn, name, lease)
}

#[test]
fn the_fleet_never_holds_more_than_the_limit_and_a_silent_node_loses_its_places() {
    let server = RedisServer::start("redis-leases");
    runtime().block_on(async {
        let mut a = node(&server.url, "edge-a", Duration::from_secs(30)).await;
        let mut b = node(&server.url, "edge-b", Duration::from_millis(300)).await;
        // acquire(account, held now, wanted, limit)
        assert_eq!(a.acquire("acct001", 0, 15, 20).await.unwrap(), 15);
        let left = b.acquire("acct001", 0, 10, 20).await.unwrap();
        assert_eq!(left, 5, "only what is left");
        let full = a.acquire("acct001", 15, 1, 20).await.unwrap();
        assert_eq!(full, 0, "the fleet is full");
        assert_eq!(a.total("acct001").await.unwrap(), 20);
        // Another account is counted on its own.
        assert_eq!(b.acquire("acct002", 0, 3, 20).await.unwrap(), 3);

        // Places given back go to whoever asks next.
        a.set("acct001", 10).await.unwrap();
        assert_eq!(b.acquire("acct001", 5, 10, 20).await.unwrap(), 5);
        assert_eq!(a.total("acct001").await.unwrap(), 20);

        // b stops renewing (a dead node): after its lease time its 10 places are free.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(a.total("acct001").await.unwrap(), 10);
        assert_eq!(a.acquire("acct001", 10, 15, 20).await.unwrap(), 10);
        assert_eq!(a.total("acct001").await.unwrap(), 20);

        // A node whose own lease expired while it kept its calls counts them again as it
        // asks: the fleet is never undercounted.
        let mut c = node(&server.url, "edge-c", Duration::from_millis(300)).await;
        assert_eq!(c.acquire("acct003", 0, 4, 5).await.unwrap(), 4);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let more = c.acquire("acct003", 4, 4, 5).await.unwrap();
        assert_eq!(more, 1, "its 4 places count again");
        assert_eq!(c.total("acct003").await.unwrap(), 5);
    });
}

/// Two nodes asking one place at a time, interleaved as fast as they can: together they get
/// exactly the limit, never one more.
#[test]
fn racing_nodes_get_exactly_the_limit_between_them() {
    let server = RedisServer::start("redis-race");
    runtime().block_on(async {
        let limit = 50;
        let race = |name: &'static str| {
            let url = server.url.clone();
            async move {
                let mut n = node(&url, name, Duration::from_secs(30)).await;
                let mut got = 0;
                let mut refused = 0;
                while refused < 20 {
                    match n.acquire("acct009", got, 1, limit).await.unwrap() {
                        0 => refused += 1,
                        g => got += g,
                    }
                }
                got
            }
        };
        let (x, y) = tokio::join!(race("edge-x"), race("edge-y"));
        assert_eq!(x + y, limit, "edge-x {x} + edge-y {y}");
        assert!(x > 0 && y > 0, "both got places: {x}, {y}");
    });
}

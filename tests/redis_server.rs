//! A `redis-server` of the test's own (Debian package `redis-server`), on a private Unix
//! socket in the test's folder, no persistence; stopped by its PID on drop.

use super::{TempDir, stop_child};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    sock: PathBuf,
    /// `redis+unix://<socket>`.
    pub url: String,
    dir: TempDir,
}

impl RedisServer {
    pub fn start(tag: &str) -> RedisServer {
        let dir = TempDir::new(tag);
        let sock = dir.0.join("redis.sock");
        let mut s = RedisServer {
            child: None,
            url: format!("redis+unix://{}", sock.display()),
            sock,
            dir,
        };
        s.restart();
        s
    }

    /// Stops the server (SIGTERM, by its PID): clients find nobody at the socket.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
        let _ = std::fs::remove_file(&self.sock);
    }

    /// Starts the server (again) on the same socket, empty.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&self.sock)
            .arg("--dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sock.exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters (no replicas) of the test's own on `ip`, ports
/// `port`..`port + 2` (cluster bus: + 10000), made with `redis-cli --cluster create`; its
/// servers stopped by their PIDs on drop.
pub struct RedisCluster {
    servers: Vec<Child>,
    /// `redis://ip:port` of each master: the seeds.
    pub urls: Vec<String>,
    _dir: TempDir,
}

impl RedisCluster {
    pub fn start(tag: &str, ip: &str, port: u16) -> RedisCluster {
        let dir = TempDir::new(tag);
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for p in port..port + 3 {
            let child = Command::new("redis-server")
                .args(["--bind", ip, "--port", &p.to_string()])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                ])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                // Else a node learns the others by their connections' source, 127.0.0.1.
                .args(["--cluster-announce-ip", ip])
                .arg("--dir")
                .arg(&dir.0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (Debian package redis-server)");
            servers.push(child);
            urls.push(format!("redis://{ip}:{p}"));
        }
        let mut cluster = RedisCluster {
            servers,
            urls,
            _dir: dir,
        };
        let addrs: Vec<String> = (port..port + 3).map(|p| format!("{ip}:{p}")).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !addrs.iter().all(|a| cli(a, &["ping"]).contains("PONG")) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new("timeout")
            .args(["30", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian package redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !addrs
            .iter()
            .all(|a| cli(a, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster.servers.shrink_to_fit();
        cluster
    }
}

fn cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("ip:port");
    Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.servers {
            stop_child(c);
        }
    }
}

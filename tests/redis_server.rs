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

//! An HTTP server that keeps what is POSTed to it (the call-end events).

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

/// A real HTTP server for the tests: accepts POSTs on `addr` (one request per connection or
/// kept alive), answers `200 OK` and keeps every request body.
pub struct HttpSink {
    pub bodies: std::sync::Arc<Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    pub fn start(addr: &str) -> HttpSink {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener =
            std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking");
        let bodies: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
        let stop: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (b, st) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut writer = conn;
                // Requests on this connection until the client closes it.
                loop {
                    let mut len = 0usize;
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    b.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into());
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        HttpSink {
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

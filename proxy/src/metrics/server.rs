//! The `/metrics` HTTP server (hyper on a tokio runtime of its own): `GET /metrics` answers
//! the text of [`render`]. Connections are bounded in number, per source address and in
//! time, so that a scanner's idle connections cannot keep the scrapers out.

use super::prometheus::{Sources, render};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections served at once, from one source address at once, and how long one may last.
const CONNECTIONS: usize = 64;
const PER_SOURCE: usize = 8;
const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// The `/metrics` HTTP server, in a thread of its own. [`MetricsServer::stop`] ends it.
pub struct MetricsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl MetricsServer {
    /// Stops accepting, drops the connections in progress and waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The connections open, by source address.
#[derive(Default)]
struct Open(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`Open`], given back on drop.
struct Place {
    open: Arc<Open>,
    from: IpAddr,
}

impl Open {
    /// A place for a connection from `from`, unless it has [`PER_SOURCE`] open already.
    fn take(self: &Arc<Self>, from: IpAddr) -> Option<Place> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(from).or_default();
        if *n >= PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Place {
            open: self.clone(),
            from,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut m = self.open.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.from);
            }
        }
    }
}

/// Serves `GET /metrics` on `addr` (see [`answer`]), one request per connection.
pub fn serve(addr: SocketAddr, src: Sources) -> io::Result<MetricsServer> {
    // Bound here, so that a busy address is an error of the caller's.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // A scanner's connections that never send, send forever or never read are closed: at
    // most CONNECTIONS at once and PER_SOURCE from one address (more are closed as they
    // come), each CONNECTION_TIME at most.
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let open = Arc::new(Open::default());
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let src = Arc::new(src);
    let thread = std::thread::Builder::new()
        .name("siplb-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("metrics listener: {e}");
                        return;
                    }
                };
                loop {
                    let conn = tokio::select! {
                        _ = &mut stopped => break,
                        conn = listener.accept() => conn,
                    };
                    let (stream, from) = match conn {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors, say: not a loop at full speed meanwhile.
                            tracing::warn!("metrics listener: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(place) = open.take(from.ip()) else {
                        continue;
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let src = src.clone();
                    tokio::spawn(async move {
                        let _held = (slot, place);
                        let service = service_fn(move |req| {
                            std::future::ready(Ok::<_, Infallible>(answer(&req, &src)))
                        });
                        let conn = http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service);
                        match tokio::time::timeout(CONNECTION_TIME, conn).await {
                            Ok(Err(e)) => tracing::debug!("metrics connection: {e}"),
                            Err(_) => tracing::debug!("metrics connection: timed out"),
                            Ok(Ok(())) => {}
                        }
                    });
                }
            });
        })?;
    Ok(MetricsServer { stop, thread })
}

/// `GET /metrics`: the text; `HEAD /metrics`: the same head (hyper leaves out the body of a
/// reply to HEAD, Content-Length kept); another method on `/metrics`, or on the server as a
/// whole (`OPTIONS *`): 405 with `Allow`; any other path: 404.
fn answer<B>(req: &Request<B>, src: &Sources) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *resp.status_mut() = status;
        resp
    };
    let path = req.uri().path();
    if path != "/metrics" && path != "*" {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if path == "*" || (req.method() != Method::GET && req.method() != Method::HEAD) {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = Response::new(Full::new(Bytes::from(render(src))));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Profiles;
    use crate::metrics::ShardStats;

    /// A server on a free loopback port, with one worker's statistics.
    fn started() -> (SocketAddr, MetricsServer) {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let src = Sources {
            workers: vec![Arc::new(ShardStats::default())],
            globals: vec![],
            profiles: Arc::new(Profiles::new(&[], &[], 10)),
            gateways: None,
        };
        (addr, serve(addr, src).unwrap())
    }

    /// One request per connection, answered and closed; `GET` and `HEAD` on `/metrics` only.
    #[test]
    fn serves_metrics_head_405_and_404_then_stops() {
        use std::io::{Read, Write};
        let (addr, server) = started();
        let ask = |method: &str, path: &str| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            write!(c, "{method} {path} HTTP/1.1\r\nHost: siplb\r\n\r\n").unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            text
        };
        let ok = ask("GET", "/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# HELP siplb_"), "{ok}");
        let head = ask("HEAD", "/metrics");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
        let length = |t: &str| {
            t.lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        assert!(length(&head).unwrap() > 1000, "{head}");
        let post = ask("POST", "/metrics");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("allow: GET, HEAD\r\n"), "{post}");
        let missing = ask("GET", "/other");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(missing.ends_with("\r\n\r\nnot found\n"), "{missing}");
        let server_wide = ask("OPTIONS", "*");
        assert!(server_wide.starts_with("HTTP/1.1 405"), "{server_wide}");
        assert!(
            server_wide.contains("allow: GET, HEAD\r\n"),
            "{server_wide}"
        );
        server.stop();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    /// A scanner's idle connections from one address take at most `PER_SOURCE` places:
    /// another address is still served, and the scanner's next connection is closed.
    #[test]
    fn idle_connections_from_one_address_do_not_keep_others_out() {
        use std::io::{Read, Write};
        let (addr, server) = started();
        let from = |ip: &str| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let local: SocketAddr = format!("{ip}:0").parse().unwrap();
            s.bind(&local.into()).unwrap();
            s.connect(&addr.into()).unwrap();
            std::net::TcpStream::from(s)
        };
        let idle: Vec<_> = (0..CONNECTIONS).map(|_| from("127.0.0.3")).collect();
        let mut other = from("127.0.0.4");
        write!(other, "GET /metrics HTTP/1.1\r\nHost: siplb\r\n\r\n").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut text = String::new();
        other.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        // Past its PER_SOURCE, the scanner's connections were closed as they came.
        let closed = idle
            .into_iter()
            .filter_map(|mut c| {
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                matches!(c.read(&mut [0u8; 16]), Ok(0)).then_some(())
            })
            .count();
        assert_eq!(closed, CONNECTIONS - PER_SOURCE);
        server.stop();
    }
}

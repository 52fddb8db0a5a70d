//! Prometheus text exposition (format 0.0.4) on `metrics.listen`, `GET /metrics`.
//!
//! Names are `siplb_<group>_<name>`, `_total` on counters. Per-worker statistics
//! carry a `worker` label (sum them for the node); profile sizes carry a `profile` label (the
//! sum over its values for a with-value profile: one series per account would be unbounded).

use super::names;
use crate::dialog::Profiles;
use crate::metrics::{Counter, ShardStats};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a scrape reads; all of it shared, none of it locked.
#[derive(Clone)]
pub struct Sources {
    pub workers: Vec<Arc<ShardStats>>,
    pub globals: Vec<(&'static str, Arc<Counter>)>,
    pub profiles: Arc<Profiles>,
}

/// `group:name` → `siplb_group_name`, with `_total` for a counter.
pub fn metric_name(stat: &str) -> String {
    let mut n = format!("siplb_{}", stat.replace([':', '.', '-'], "_"));
    if !names::GAUGES.contains(&stat) {
        n.push_str("_total");
    }
    n
}

fn kind(stat: &str) -> &'static str {
    if names::GAUGES.contains(&stat) {
        "gauge"
    } else {
        "counter"
    }
}

/// Escapes a label value (backslash, quote, line feed).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(src: &Sources) -> String {
    let mut out = String::new();
    let mut per_stat: Vec<(&'static str, Vec<u64>)> = Vec::new();
    for w in &src.workers {
        let mut i = 0;
        w.each(|name, v| {
            match per_stat.get_mut(i) {
                Some((_, vs)) => vs.push(v),
                None => per_stat.push((name, vec![v])),
            }
            i += 1;
        });
    }
    for (stat, values) in &per_stat {
        let n = metric_name(stat);
        let _ = writeln!(out, "# TYPE {n} {}", kind(stat));
        for (w, v) in values.iter().enumerate() {
            let _ = writeln!(out, "{n}{{worker=\"{w}\"}} {v}");
        }
    }
    for (stat, c) in &src.globals {
        let n = metric_name(stat);
        let _ = writeln!(out, "# TYPE {n} {}\n{n} {}", kind(stat), c.get());
    }
    let n = "siplb_dialog_profile_size";
    let _ = writeln!(out, "# TYPE {n} gauge");
    for p in &src.profiles.list {
        let _ = writeln!(
            out,
            "{n}{{profile=\"{}\"}} {}",
            label(&p.name),
            p.size(None)
        );
    }
    out
}

/// The `/metrics` HTTP server: hyper on a single-threaded tokio runtime, in a thread of its
/// own. [`MetricsServer::stop`] ends it.
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

/// Serves `GET /metrics` on `addr` (anything else: 404), one request per connection.
pub fn serve(addr: SocketAddr, src: Sources) -> io::Result<MetricsServer> {
    // Bound here, so that a busy address is an error of the caller's.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
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
                    let stream = match conn {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!("metrics listener: {e}");
                            continue;
                        }
                    };
                    let src = src.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            std::future::ready(Ok::<_, Infallible>(answer(&req, &src)))
                        });
                        let conn = http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!("metrics connection: {e}");
                        }
                    });
                }
            });
        })?;
    Ok(MetricsServer { stop, thread })
}

fn answer<B>(req: &Request<B>, src: &Sources) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let mut resp = Response::new(Full::new(Bytes::from(render(src))));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    } else {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_labels() {
        assert_eq!(metric_name("core:hand_offs"), "siplb_core_hand_offs_total");
        assert_eq!(
            metric_name("dialog:active_dialogs"),
            "siplb_dialog_active_dialogs"
        );
        let a = Arc::new(ShardStats::default());
        let b = Arc::new(ShardStats::default());
        a.hand_offs.add(3);
        b.active_dialogs.set(2);
        let src = Sources {
            workers: vec![a, b],
            globals: vec![(names::EVENTS_DROPPED, Arc::default())],
            profiles: Arc::new(Profiles::new(
                &[("total".into(), Default::default())],
                &[],
                10,
            )),
        };
        let text = render(&src);
        for line in [
            "# TYPE siplb_core_hand_offs_total counter",
            "siplb_core_hand_offs_total{worker=\"0\"} 3",
            "siplb_core_hand_offs_total{worker=\"1\"} 0",
            "# TYPE siplb_dialog_active_dialogs gauge",
            "siplb_dialog_active_dialogs{worker=\"1\"} 2",
            "siplb_events_dropped_total 0",
            "siplb_dialog_profile_size{profile=\"total\"} 0",
            "siplb_dialog_profile_size{profile=\"account\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, v) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("siplb_"), "{l}");
            v.parse::<u64>().unwrap();
        }
    }

    /// One request per connection, answered and closed; `/metrics` only.
    #[test]
    fn serves_metrics_and_404_then_stops() {
        use std::io::{Read, Write};
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let src = Sources {
            workers: vec![Arc::new(ShardStats::default())],
            globals: vec![],
            profiles: Arc::new(Profiles::new(&[], &[], 10)),
        };
        let server = serve(addr, src).unwrap();
        let get = |path: &str| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: siplb\r\n\r\n").unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            text
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\r\n\r\n# TYPE siplb_"), "{ok}");
        let missing = get("/other");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(missing.ends_with("\r\n\r\nnot found\n"), "{missing}");
        server.stop();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}

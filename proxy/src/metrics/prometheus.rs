//! Prometheus text exposition (format 0.0.4) on `metrics.listen`, `GET /metrics`.
//!
//! Names follow DESIGN §7: `siplb_<group>_<name>`, `_total` on counters. Per-worker statistics
//! carry a `worker` label (sum them for the node); profile sizes carry a `profile` label (the
//! sum over its values for a with-value profile: one series per account would be unbounded).

use super::names;
use crate::dialog::Profiles;
use crate::metrics::{Counter, ShardStats};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// Serves `GET /metrics` on `addr` from a thread of its own until `shutdown`.
pub fn serve(
    addr: SocketAddr,
    src: Sources,
    shutdown: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("siplb-metrics".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Err(e) = answer(conn, &src) {
                            tracing::debug!("metrics connection: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        tracing::warn!("metrics listener: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

fn answer(conn: std::net::TcpStream, src: &Sources) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    // The rest of the request head.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut w = conn;
    let path = first.split_whitespace().nth(1).unwrap_or("");
    if first.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        let body = render(src);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        w.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        )
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
}

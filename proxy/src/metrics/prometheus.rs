//! Prometheus text exposition (format 0.0.4), served on `metrics.listen` by [`super::server`].
//!
//! Names are `siplb_<group>_<name>`, `_total` on counters. Per-worker statistics
//! carry a `worker` label (sum them for the node); profile sizes carry a `profile` label (the
//! sum over its values for a with-value profile: one series per account would be unbounded).
//! Every family has `# HELP` (the meaning column of `docs/METRICS.md`, built in) and `# TYPE`.
//! The latency percentiles become a summary in seconds; `siplb_build_info` and the standard
//! `process_*` families (from `/proc/self`) complete it.

use super::names;
use crate::dialog::Profiles;
use crate::metrics::{Counter, ShardStats};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

/// What a scrape reads; all of it shared, none of it locked.
#[derive(Clone)]
pub struct Sources {
    pub workers: Vec<Arc<ShardStats>>,
    pub globals: Vec<(&'static str, Arc<Counter>)>,
    pub profiles: Arc<Profiles>,
    /// The gateway sets in force (none: no gateway families).
    pub gateways: Option<Arc<crate::proxy::LiveGateways>>,
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

/// `docs/METRICS.md`: its tables give every family its `# HELP`.
const DOC: &str = include_str!("../../../docs/METRICS.md");

/// A row of a table of `docs/METRICS.md`: its type column and its meaning, as HELP text.
#[derive(Debug)]
struct DocRow {
    #[cfg_attr(not(test), allow(dead_code))] // checked against `names::GAUGES` by a test
    kind: &'static str,
    help: String,
}

/// The rows of `docs/METRICS.md` by name: the statistic (`core:hand_offs`) or the Prometheus
/// family (`siplb_build_info`, labels cut off).
fn doc_rows() -> &'static HashMap<&'static str, DocRow> {
    static ROWS: OnceLock<HashMap<&'static str, DocRow>> = OnceLock::new();
    ROWS.get_or_init(|| parse_doc(DOC))
}

fn parse_doc(doc: &'static str) -> HashMap<&'static str, DocRow> {
    let mut rows = HashMap::new();
    for line in doc.lines() {
        let Some(line) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = line.trim_end().trim_end_matches('|').split(" | ").collect();
        let [name, kind, meaning] = cells[..] else {
            continue;
        };
        let Some(name) = name.split('`').next() else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        rows.insert(
            name,
            DocRow {
                kind: kind.trim(),
                help: help_text(meaning.trim()),
            },
        );
    }
    rows
}

/// A table cell as a HELP text: no code marks, links as their text, `\|` as `|`, backslash
/// and line feed escaped.
fn help_text(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut rest = md;
    while let Some(c) = rest.chars().next() {
        // `[text](target)` → `text`
        if c == '['
            && let Some((text, after)) = rest[1..].split_once("](")
            && let Some((_, after)) = after.split_once(')')
        {
            out.push_str(text);
            rest = after;
            continue;
        }
        match c {
            '`' => {}
            '\\' if rest[1..].starts_with('|') => {}
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The HELP text of `key` (a statistic or a family); the key itself if it is not documented
/// (a test makes sure every one is).
fn help(key: &str) -> &str {
    doc_rows().get(key).map_or(key, |r| r.help.as_str())
}

/// `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The per-worker statistics that `/metrics` has as the latency summary and max gauge.
const LATENCY: [&str; 3] = [
    names::CORE_LATENCY_P50_US,
    names::CORE_LATENCY_P99_US,
    names::CORE_LATENCY_MAX_US,
];

pub const LATENCY_SUMMARY: &str = "siplb_core_latency_seconds";
pub const LATENCY_MAX: &str = "siplb_core_latency_max_seconds";
pub const PROFILE_SIZE: &str = "siplb_dialog_profile_size";
pub const BUILD_INFO: &str = "siplb_build_info";
pub const GATEWAY_UP: &str = "siplb_dispatcher_gateway_up";
pub const GATEWAY_CALLS: &str = "siplb_dispatcher_gateway_calls";
pub const PROBE_RTT: &str = "siplb_dispatcher_probe_rtt_seconds";
pub const PROBES_FAILED: &str = "siplb_dispatcher_probes_failed_total";

/// A value in µs as seconds.
fn seconds_of_us(us: u64) -> f64 {
    us as f64 / 1e6
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
        if LATENCY.contains(stat) {
            continue;
        }
        let n = metric_name(stat);
        family(&mut out, &n, kind(stat), help(stat));
        for (w, v) in values.iter().enumerate() {
            let _ = writeln!(out, "{n}{{worker=\"{w}\"}} {v}");
        }
    }
    render_latency(&mut out, &src.workers);
    for (stat, c) in &src.globals {
        let n = metric_name(stat);
        family(&mut out, &n, kind(stat), help(stat));
        let _ = writeln!(out, "{n} {}", c.get());
    }
    let n = PROFILE_SIZE;
    family(&mut out, n, "gauge", help(n));
    for p in &src.profiles.list {
        let _ = writeln!(
            out,
            "{n}{{profile=\"{}\"}} {}",
            label(&p.name),
            p.size(None)
        );
    }
    if let Some(g) = &src.gateways {
        render_gateways(&mut out, &g.get());
    }
    let n = BUILD_INFO;
    family(&mut out, n, "gauge", help(n));
    let _ = writeln!(
        out,
        "{n}{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    render_process(&mut out, &Process::read());
    out
}

/// Per gateway (`set`, `gateway` labels): whether it takes new calls, its calls, the last
/// probe's round trip (once one was answered), probes failed.
fn render_gateways(out: &mut String, g: &crate::proxy::Gateways) {
    let each = |out: &mut String,
                name: &str,
                kind: &str,
                v: &dyn Fn(&crate::proxy::Gateway) -> Option<String>| {
        family(out, name, kind, help(name));
        for set in &g.sets {
            for gw in &set.gateways {
                if let Some(v) = v(gw) {
                    let _ = writeln!(
                        out,
                        "{name}{{set=\"{}\",gateway=\"{}\"}} {v}",
                        label(&set.name),
                        gw.target.addr
                    );
                }
            }
        }
    };
    use std::sync::atomic::Ordering::Relaxed;
    each(out, GATEWAY_UP, "gauge", &|gw| {
        Some(u8::from(gw.state.health.usable()).to_string())
    });
    each(out, GATEWAY_CALLS, "gauge", &|gw| {
        Some(gw.state.calls.load(Relaxed).to_string())
    });
    each(out, PROBE_RTT, "gauge", &|gw| {
        gw.state.health.rtt().map(|d| d.as_secs_f64().to_string())
    });
    each(out, PROBES_FAILED, "counter", &|gw| {
        Some(gw.state.health.probes().1.to_string())
    });
}

/// The latency summary (quantiles, `_sum`, `_count`) and the max gauge, per worker, in
/// seconds. The quantiles are NaN while nothing was recorded.
fn render_latency(out: &mut String, workers: &[Arc<ShardStats>]) {
    let n = LATENCY_SUMMARY;
    family(out, n, "summary", help(n));
    for (w, s) in workers.iter().enumerate() {
        let count = s.latency_count.get();
        for (q, v) in [("0.5", &s.latency_p50_us), ("0.99", &s.latency_p99_us)] {
            if count == 0 {
                let _ = writeln!(out, "{n}{{worker=\"{w}\",quantile=\"{q}\"}} NaN");
            } else {
                let v = seconds_of_us(v.get());
                let _ = writeln!(out, "{n}{{worker=\"{w}\",quantile=\"{q}\"}} {v}");
            }
        }
        let sum = s.latency_sum_ns.get() as f64 / 1e9;
        let _ = writeln!(out, "{n}_sum{{worker=\"{w}\"}} {sum}");
        let _ = writeln!(out, "{n}_count{{worker=\"{w}\"}} {count}");
    }
    let n = LATENCY_MAX;
    family(out, n, "gauge", help(n));
    for (w, s) in workers.iter().enumerate() {
        let v = seconds_of_us(s.latency_max_us.get());
        let _ = writeln!(out, "{n}{{worker=\"{w}\"}} {v}");
    }
}

/// The standard `process_*` values, read from `/proc/self` at each scrape; `None` for what
/// could not be read.
#[derive(Debug, Default, PartialEq)]
struct Process {
    start_time_seconds: Option<f64>,
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Process {
    fn read() -> Process {
        // SAFETY: sysconf only reads a system constant.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let mut p = Process::from_stat(&stat, boot, tick as f64, page.max(0) as u64);
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit to a valid pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = Some(lim.rlim_cur);
        }
        p
    }

    /// From the text of `/proc/self/stat` (proc(5)): utime and stime (fields 14, 15) and
    /// starttime (22) in clock ticks, vsize (23) in bytes, rss (24) in pages; `boot` is the
    /// boot time (`btime` of `/proc/stat`), in seconds since the epoch.
    fn from_stat(stat: &str, boot: Option<u64>, tick: f64, page: u64) -> Process {
        // The command name (field 2) is in parentheses and may hold anything: count after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let ticks = tick > 0.0;
        Process {
            start_time_seconds: field(22)
                .zip(boot)
                .filter(|_| ticks)
                .map(|(t, b)| b as f64 + t as f64 / tick),
            cpu_seconds: field(14)
                .zip(field(15))
                .filter(|_| ticks)
                .map(|(u, s)| (u + s) as f64 / tick),
            resident_bytes: field(24).map(|p| p * page),
            virtual_bytes: field(23),
            open_fds: None,
            max_fds: None,
        }
    }
}

/// `btime` of `/proc/stat`.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn render_process(out: &mut String, p: &Process) {
    let floats = [
        ("process_start_time_seconds", "gauge", p.start_time_seconds),
        ("process_cpu_seconds_total", "counter", p.cpu_seconds),
    ];
    for (n, kind, v) in floats {
        if let Some(v) = v {
            family(out, n, kind, help(n));
            let _ = writeln!(out, "{n} {v}");
        }
    }
    let ints = [
        ("process_resident_memory_bytes", p.resident_bytes),
        ("process_virtual_memory_bytes", p.virtual_bytes),
        ("process_open_fds", p.open_fds),
        ("process_max_fds", p.max_fds),
    ];
    for (n, v) in ints {
        if let Some(v) = v {
            family(out, n, "gauge", help(n));
            let _ = writeln!(out, "{n} {v}");
        }
    }
}

#[cfg(test)]
#[path = "../../../tests/exposition.rs"]
mod exposition;

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(workers: Vec<Arc<ShardStats>>) -> Sources {
        Sources {
            workers,
            globals: vec![(names::EVENTS_DROPPED, Arc::default())],
            profiles: Arc::new(Profiles::new(
                &[("total".into(), Default::default())],
                &[],
                10,
            )),
            gateways: Some(Arc::new(crate::proxy::LiveGateways::new(
                vec!["127.0.0.1:5081".parse().unwrap()].into(),
            ))),
        }
    }

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
        let text = render(&sources(vec![a, b]));
        for line in [
            "# TYPE siplb_core_hand_offs_total counter",
            "siplb_core_hand_offs_total{worker=\"0\"} 3",
            "siplb_core_hand_offs_total{worker=\"1\"} 0",
            "# TYPE siplb_dialog_active_dialogs gauge",
            "siplb_dialog_active_dialogs{worker=\"1\"} 2",
            "siplb_events_dropped_total 0",
            "siplb_dialog_profile_size{profile=\"total\"} 0",
            "siplb_dialog_profile_size{profile=\"account\"} 0",
            "siplb_dispatcher_gateway_up{set=\"default\",gateway=\"127.0.0.1:5081\"} 1",
            "siplb_dispatcher_gateway_calls{set=\"default\",gateway=\"127.0.0.1:5081\"} 0",
            "siplb_dispatcher_probes_failed_total{set=\"default\",gateway=\"127.0.0.1:5081\"} 0",
            "# TYPE siplb_build_info gauge",
            concat!(
                "siplb_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\"} 1"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    /// The whole text, line by line: HELP and TYPE before the samples of each family, names
    /// and labels well formed, counters in `_total` (the checker of `tests/exposition.rs`).
    #[test]
    fn the_text_is_valid_exposition() {
        let a = Arc::new(ShardStats::default());
        a.latency_count.add(2);
        a.latency_p50_us.set(10);
        let text = render(&sources(vec![a, Arc::default()]));
        let exp = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(exp.samples.len() > 50, "{text}");
        // The checker catches what it checks.
        for bad in [
            "x 1\n",
            "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n# HELP x X.\n",
            "# HELP x X.\n# TYPE x counter\nx 1\n",
            "# HELP x X.\nx 1\n# TYPE x gauge\n",
            "# HELP x X.\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
            "# HELP x X.\n# TYPE x summary\nx 1\n",
            "# HELP 1x X.\n# TYPE 1x gauge\n1x 1\n",
            "# HELP x X.\n# TYPE x gauge\nx 1\n# HELP y Y.\n# TYPE y gauge\ny 1\nx{a=\"b\"} 1\n",
        ] {
            assert!(exposition::parse(bad).is_err(), "{bad}");
        }
    }

    /// Each family's HELP is the meaning column of its row in docs/METRICS.md, and its TYPE
    /// the row's type column: the two cannot disagree.
    #[test]
    fn every_family_has_the_help_and_type_of_its_row_in_the_docs() {
        let text = render(&sources(vec![Arc::default()]));
        let exp = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut stats = Vec::new();
        ShardStats::default().each(|n, _| stats.push(n));
        stats.push(names::EVENTS_DROPPED);
        for (family, (kind, help)) in &exp.families {
            let key = stats
                .iter()
                .find(|s| metric_name(s) == *family)
                .copied()
                .unwrap_or(family);
            let row = doc_rows()
                .get(key)
                .unwrap_or_else(|| panic!("{family} ({key}) has no row in docs/METRICS.md"));
            assert_eq!(&row.help, help, "{family}");
            assert_eq!(row.kind, kind, "the type of {family} in docs/METRICS.md");
            assert!(!help.contains('`'), "{help}");
        }
        for family in [
            LATENCY_SUMMARY,
            LATENCY_MAX,
            BUILD_INFO,
            PROFILE_SIZE,
            GATEWAY_UP,
            GATEWAY_CALLS,
            PROBES_FAILED,
            "process_start_time_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(exp.families.contains_key(family), "{family} in\n{text}");
        }
    }

    /// The type column of every statistic agrees with `names::GAUGES` (and so with the
    /// `_total` of its Prometheus name).
    #[test]
    fn the_docs_type_of_every_statistic_is_its_kind() {
        let names = include_str!("names.rs");
        for stat in names
            .lines()
            .filter(|l| l.starts_with("pub const"))
            .filter_map(|l| l.split('"').nth(1))
        {
            let row = doc_rows().get(stat).unwrap_or_else(|| panic!("{stat}"));
            assert_eq!(row.kind, kind(stat), "{stat}");
        }
    }

    #[test]
    fn help_text_from_a_table_cell() {
        assert_eq!(
            help_text(r"`a:b` in \`x\` \| see [Renamed](#renamed), a\b."),
            r"a:b in \\x\\ | see Renamed, a\\b."
        );
        assert_eq!(help_text("[not a link"), "[not a link");
        let rows = parse_doc(
            "| name | kind | meaning |\n|---|---|---|\n| `core:x` | counter | The `x`. |\n\
             | `siplb_y{l=\"…\"\\|\"b\"}` | gauge | Y. |\n",
        );
        assert_eq!(rows["core:x"].help, "The x.");
        assert_eq!(rows["core:x"].kind, "counter");
        assert_eq!(rows["siplb_y"].kind, "gauge");
    }

    /// The summary: two quantiles, `_sum` and `_count` per worker, in seconds; NaN quantiles
    /// before the first datagram; the max as a gauge; no `_us` gauges left.
    #[test]
    fn latency_is_a_summary_in_seconds() {
        let a = Arc::new(ShardStats::default());
        a.latency_p50_us.set(12);
        a.latency_p99_us.set(250);
        a.latency_max_us.set(1_500);
        a.latency_count.add(4);
        a.latency_sum_ns.add(1_500_000);
        let text = render(&sources(vec![a, Arc::default()]));
        for line in [
            "# TYPE siplb_core_latency_seconds summary",
            "siplb_core_latency_seconds{worker=\"0\",quantile=\"0.5\"} 0.000012",
            "siplb_core_latency_seconds{worker=\"0\",quantile=\"0.99\"} 0.00025",
            "siplb_core_latency_seconds_sum{worker=\"0\"} 0.0015",
            "siplb_core_latency_seconds_count{worker=\"0\"} 4",
            "siplb_core_latency_seconds{worker=\"1\",quantile=\"0.5\"} NaN",
            "siplb_core_latency_seconds_count{worker=\"1\"} 0",
            "# TYPE siplb_core_latency_max_seconds gauge",
            "siplb_core_latency_max_seconds{worker=\"0\"} 0.0015",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#'));
        assert!(!samples.clone().any(|l| l.contains("_us")), "{text}");
    }

    #[test]
    fn process_values_from_proc_self_stat() {
        // comm may hold spaces and parentheses; fields counted from the last ')'.
        let stat = "4242 (siplb (w) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 1000 123456789 300 18446744073709551615";
        let p = Process::from_stat(stat, Some(1_700_000_000), 100.0, 4096);
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(p.virtual_bytes, Some(123_456_789));
        assert_eq!(p.resident_bytes, Some(300 * 4096));
        assert_eq!(
            Process::from_stat("", None, 100.0, 4096),
            Process::default()
        );
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        // This process: started before now, some memory, some fds.
        let me = Process::read();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = me.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(me.resident_bytes.unwrap() > 1 << 20);
        assert!(me.open_fds.unwrap() >= 3);
        assert!(me.max_fds.unwrap() >= me.open_fds.unwrap());
    }
}

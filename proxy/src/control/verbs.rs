//! The RPC verbs, with Kamailio's names, arguments and output shapes (kamcmd's brace format).
//! Each verb is described in [`super::table::VERBS`].

use super::ControlState;
use super::format::Reply;
use super::table;
use crate::proxy::{DialogFilter, DialogInfo, EndTarget, LegInfo};
use crate::worker::ControlJob;
use serde_json::{Value, json};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

pub const SYSTEM_LIST_METHODS: &str = "system.listMethods";
pub const SYSTEM_METHOD_HELP: &str = "system.methodHelp";
pub const STATS_GET_STATISTICS: &str = "stats.get_statistics";
pub const CORE_VERSION: &str = "core.version";
/// Kamailio's shape: `{ now, up_since, uptime }`.
pub const CORE_UPTIME: &str = "core.uptime";
/// siplb's own: workers, steering, listen addresses, config file.
pub const CORE_INFO: &str = "core.info";
/// `core.drain <seconds>`: the graceful drain ([`crate::drain`]).
pub const CORE_DRAIN: &str = "core.drain";
pub const DLG_LIST: &str = "dlg.list";
pub const DLG_STATS_ACTIVE: &str = "dlg.stats_active";
pub const DLG_PROFILE_GET_SIZE: &str = "dlg.profile_get_size";
pub const DLG_PROFILE_LIST: &str = "dlg.profile_list";
/// siplb's own: the highest size a profile (or a value of it) reached.
pub const DLG_PROFILE_GET_MAX: &str = "dlg.profile_get_max";
pub const DLG_END_DLG: &str = "dlg.end_dlg";
pub const DLG_TERMINATE_DLG: &str = "dlg.terminate_dlg";
/// siplb's own: the XDP guard's blocklist (`add <net>`, `del <net>`, `list`).
pub const BLOCKLIST: &str = "blocklist";
/// Kamailio `pike.top`: the sources the flood limit tracks, busiest first.
pub const PIKE_TOP: &str = "pike.top";
/// siplb's own (Kamailio: `corex.debug`): the log level, shown or set.
pub const LOG_LEVEL: &str = "log.level";
/// Kamailio's `cfg.reload` (of its cfg framework): re-read the configuration file.
pub const CFG_RELOAD: &str = "cfg.reload";

/// How long the control thread waits for the workers.
const WORKER_TIMEOUT: Duration = Duration::from_secs(3);

/// Every statistic, summed over workers, in a stable order.
pub fn statistics(state: &ControlState) -> Vec<(&'static str, u64)> {
    let mut all: Vec<(&'static str, u64)> = Vec::new();
    for w in &state.workers {
        let mut i = 0;
        w.stats.each(|name, v| {
            if let Some(e) = all.get_mut(i) {
                if crate::metrics::names::MAX_OF_WORKERS.contains(&name) {
                    e.1 = e.1.max(v);
                } else {
                    e.1 += v;
                }
            } else {
                all.push((name, v));
            }
            i += 1;
        });
    }
    all.extend(state.globals.iter().map(|(n, c)| (*n, c.get())));
    all.sort_by_key(|(n, _)| *n);
    all
}

pub fn run(state: &ControlState, args: &[&str]) -> Result<Reply, String> {
    let Some((&verb, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let want = |n: std::ops::RangeInclusive<usize>, usage: &str| {
        if n.contains(&rest.len()) {
            Ok(())
        } else {
            Err(format!("usage: {verb} {usage}").trim_end().to_string())
        }
    };
    match verb {
        SYSTEM_LIST_METHODS => {
            want(0..=0, "")?;
            Ok(Reply::Both {
                text: Box::new(Reply::Lines(table::lines())),
                json: table::VERBS.iter().map(verb_value).collect(),
            })
        }
        SYSTEM_METHOD_HELP => {
            want(1..=1, "<verb>")?;
            let v = table::find(rest[0]).ok_or_else(|| table::unknown(rest[0]))?;
            Ok(Reply::Both {
                text: Box::new(Reply::Scalar(Value::from(v.help))),
                json: verb_value(v),
            })
        }
        CORE_UPTIME => {
            want(0..=0, "")?;
            let now = std::time::SystemTime::now();
            let unix = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            Ok(Reply::Struct(json!({
                "now": ctime(unix(now)),
                "up_since": ctime(unix(state.started.0)),
                "uptime": state.started.1.elapsed().as_secs(),
            })))
        }
        CORE_INFO => {
            want(0..=0, "")?;
            let bpf = state
                .globals
                .iter()
                .any(|(n, c)| *n == crate::metrics::names::CORE_STEERING_BPF && c.get() > 0);
            let info = &state.info;
            Ok(Reply::Struct(json!({
                "version": version(),
                "pid": std::process::id(),
                "workers": state.workers.len(),
                "steering": {
                    "mode": info.steering,
                    "active": if bpf { "bpf" } else { "software" },
                },
                "xdp_guard": if state.guard.get().is_some() { "attached" } else { "off" },
                "listen": info.listen,
                "config": info.config,
                "control_socket": info.control_socket,
            })))
        }
        CORE_DRAIN => {
            want(1..=1, "<seconds>")?;
            let seconds = rest[0]
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=crate::drain::MAX_SECONDS).contains(s))
                .ok_or_else(|| {
                    format!(
                        "usage: {verb} <seconds>: from 1 to {}, not `{}`",
                        crate::drain::MAX_SECONDS,
                        rest[0]
                    )
                })?;
            let deadline = state.drain.start(seconds);
            let up = crate::drain::dialogs_up(&state.workers);
            tracing::info!(
                "core.drain: draining; {up} dialogs up; exiting when they have ended, at the \
                 latest in {} s",
                (deadline / 1000).saturating_sub(unix_now())
            );
            Ok(Reply::Struct(json!({
                "draining": true,
                "dialogs": up,
                "deadline": ctime(deadline / 1000),
            })))
        }
        STATS_GET_STATISTICS => {
            let filters: Vec<&str> = if rest.is_empty() {
                vec!["all"]
            } else {
                rest.to_vec()
            };
            let stats = statistics(state);
            // Each statistic once, in the order the arguments first ask for it; an argument
            // that matches nothing is left out, unless none matches anything.
            let mut out: Vec<(String, u64)> = Vec::new();
            for f in &filters {
                for (name, v) in &stats {
                    let keep = match *f {
                        "all" => true,
                        g if g.ends_with(':') => name.starts_with(g),
                        n => *name == n,
                    };
                    if keep && !out.iter().any(|(n, _)| n == name) {
                        out.push((name.to_string(), *v));
                    }
                }
            }
            if out.is_empty() {
                let asked: Vec<String> = filters.iter().map(|f| format!("`{f}`")).collect();
                return Err(format!("no statistic matches {}", asked.join(", ")));
            }
            Ok(Reply::Statistics(out))
        }
        CORE_VERSION => {
            want(0..=0, "")?;
            Ok(Reply::Scalar(Value::from(version())))
        }
        DLG_PROFILE_GET_SIZE | DLG_PROFILE_GET_MAX => {
            want(1..=2, "<profile> [value]")?;
            let p = state
                .profiles
                .get(rest[0])
                .ok_or_else(|| format!("no profile `{}`", rest[0]))?;
            if rest.len() == 2 && !p.with_value() {
                return Err(format!("profile `{}` has no values", rest[0]));
            }
            if verb == DLG_PROFILE_GET_MAX && rest.len() == 1 && p.with_value() {
                return Err(format!("usage: {verb} {} <value>", rest[0]));
            }
            let value = rest.get(1).map(|v| v.as_bytes());
            Ok(Reply::Scalar(Value::from(
                if verb == DLG_PROFILE_GET_SIZE {
                    p.size(value)
                } else {
                    p.high_water(value)
                },
            )))
        }
        DLG_PROFILE_LIST => {
            want(1..=2, "<profile> [value]")?;
            let id = state
                .profiles
                .id(rest[0])
                .ok_or_else(|| format!("no profile `{}`", rest[0]))?;
            if rest.len() == 2 && !state.profiles.list[id as usize].with_value() {
                return Err(format!("profile `{}` has no values", rest[0]));
            }
            let filter = DialogFilter {
                profile: Some((id, rest.get(1).map(|v| v.as_bytes().into()))),
            };
            Ok(dialog_reply(&dialogs(state, filter)?))
        }
        DLG_LIST => {
            want(0..=0, "")?;
            Ok(dialog_reply(&dialogs(state, DialogFilter::default())?))
        }
        DLG_STATS_ACTIVE => {
            want(0..=0, "")?;
            let all = dialogs(state, DialogFilter::default())?;
            let n = |s: u8| all.iter().filter(|d| d.state == s).count();
            Ok(Reply::Struct(json!({
                "starting": n(1),
                "connecting": n(2),
                "answering": n(3),
                "ongoing": n(4),
                "all": all.len(),
            })))
        }
        DLG_END_DLG => {
            if rest.len() < 2 {
                return Err(format!("usage: {verb} <h_entry> <h_id> [extra_hdrs]"));
            }
            let (Ok(h_entry), Ok(h_id)) = (rest[0].parse(), rest[1].parse()) else {
                return Err(format!(
                    "usage: {verb} <h_entry> <h_id> (numbers) [extra_hdrs]"
                ));
            };
            let extra = extra_headers(&rest[2..])?;
            end(state, EndTarget::Id { h_entry, h_id }, extra)
        }
        DLG_TERMINATE_DLG => {
            if rest.len() < 3 {
                return Err(format!(
                    "usage: {verb} <callid> <from_tag> <to_tag> [extra_hdrs]"
                ));
            }
            let extra = extra_headers(&rest[3..])?;
            let target = EndTarget::Tags {
                call_id: rest[0].as_bytes().into(),
                from_tag: rest[1].as_bytes().into(),
                to_tag: rest[2].as_bytes().into(),
            };
            end(state, target, extra)
        }
        BLOCKLIST => {
            let guard = state.guard.get().ok_or("the XDP guard is not attached")?;
            match rest {
                ["list"] => Ok(Reply::Lines(
                    guard.blocked().iter().map(|n| n.to_string()).collect(),
                )),
                ["add", net] => {
                    let net = crate::steering::parse_ipv4_net(net)?;
                    guard.block(net)?;
                    Ok(Reply::Empty)
                }
                ["del", net] => {
                    let net = crate::steering::parse_ipv4_net(net)?;
                    if guard.unblock(net) {
                        Ok(Reply::Empty)
                    } else {
                        Err(format!("{net} is not on the blocklist"))
                    }
                }
                _ => Err(format!(
                    "usage: {verb} add <ip[/prefix]> | del <ip[/prefix]> | list"
                )),
            }
        }
        PIKE_TOP => {
            want(0..=1, "[count]")?;
            let guard = state.guard.get().ok_or("the XDP guard is not attached")?;
            let n = match rest.first() {
                Some(n) => n.parse().map_err(|_| format!("usage: {verb} [count]"))?,
                None => 20,
            };
            Ok(Reply::Structs(
                guard
                    .pike_top(n)
                    .into_iter()
                    .map(|(src, tokens)| json!({"source": src.to_string(), "tokens": tokens}))
                    .collect(),
            ))
        }
        CFG_RELOAD => {
            want(0..=0, "")?;
            let r = state
                .reloader
                .as_ref()
                .ok_or_else(|| "reload is not available yet".to_string())?;
            r.reload().map(|r| reloaded(&r))
        }
        super::dispatcher::DISPATCHER_LIST
        | super::dispatcher::DISPATCHER_SET_STATE
        | super::dispatcher::DISPATCHER_RELOAD => super::dispatcher::run(state, verb, rest),
        LOG_LEVEL => {
            want(0..=1, "[level]")?;
            let level = match rest.first() {
                Some(l) => crate::logging::set_level(l)?,
                None => crate::logging::level()?,
            };
            Ok(Reply::Scalar(Value::from(level)))
        }
        other => Err(table::unknown(other)),
    }
}

/// Posts the job `job(reply)` to every worker and collects their answers, in worker order.
fn ask_workers<T>(
    state: &ControlState,
    job: impl Fn(SyncSender<T>) -> ControlJob,
) -> Result<Vec<T>, String> {
    let mut replies = Vec::new();
    for (i, w) in state.workers.iter().enumerate() {
        let (tx, rx) = sync_channel(1);
        if w.control.push(job(tx)).is_err() {
            return Err(format!("worker {i} is busy"));
        }
        state.wake(i);
        replies.push(rx);
    }
    replies
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            rx.recv_timeout(WORKER_TIMEOUT)
                .map_err(|_| format!("worker {i} did not answer"))
        })
        .collect()
}

/// Asks every worker for its dialogs that match.
fn dialogs(state: &ControlState, filter: DialogFilter) -> Result<Vec<DialogInfo>, String> {
    let per_worker = ask_workers(state, |reply| ControlJob::Dialogs {
        filter: filter.clone(),
        reply,
    })?;
    Ok(per_worker.into_iter().flatten().collect())
}

/// Asks every worker to end the dialog; it is found if one of them had it.
fn end(state: &ControlState, target: EndTarget, extra: Box<[u8]>) -> Result<Reply, String> {
    let found = ask_workers(state, |reply| ControlJob::End {
        target: target.clone(),
        extra: extra.clone(),
        reply,
    })?;
    if found.contains(&true) {
        Ok(Reply::Empty)
    } else {
        Err("dialog not found".into())
    }
}

/// What `cfg.reload` and `dispatcher.reload` print: the line siplb logs, or in JSON its
/// parts (`changed` a list of dotted keys and named tables).
pub fn reloaded(r: &crate::reload::Reloaded) -> Reply {
    Reply::Both {
        text: Box::new(Reply::Scalar(Value::from(r.to_string()))),
        json: json!({
            "file": r.file,
            "what": r.what,
            "changed": r.changed,
            "customers": r.customers,
            "gateways": r.gateways,
            "rules": r.rules,
        }),
    }
}

/// The headers a BYE of `dlg.end_dlg` / `dlg.terminate_dlg` carries besides its own
/// (Kamailio's `extra_hdrs`), from the rest of the request line: `Name: value` lines apart
/// by CRLF, written as `\r\n` (the request is one line); each with its CRLF. None of the
/// headers siplb writes itself, nothing that is not a header line.
fn extra_headers(args: &[&str]) -> Result<Box<[u8]>, String> {
    const OWN: [&str; 16] = [
        "via",
        "v",
        "from",
        "f",
        "to",
        "t",
        "call-id",
        "i",
        "cseq",
        "content-length",
        "l",
        "max-forwards",
        "route",
        "contact",
        "m",
        "content-type",
    ];
    let text = args.join(" ");
    if text.len() > 1024 {
        return Err("extra_hdrs: at most 1024 bytes".into());
    }
    let mut out = Vec::new();
    for line in text.split("\\r\\n").flat_map(|l| l.split("\r\n")) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "extra_hdrs: `{line}` is not a `Name: value` header line"
            ));
        };
        let name = name.trim_end();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("extra_hdrs: `{name}` is not a header name"));
        }
        if OWN.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("extra_hdrs: siplb writes `{name}` itself"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "extra_hdrs: the value of `{name}` has a control character"
            ));
        }
        out.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
    }
    Ok(out.into())
}

fn leg_value(l: &LegInfo) -> Value {
    json!({
        "tag": l.tag,
        "contact": l.contact,
        "cseq": l.cseq,
        "route_set": l.route_set,
        "socket": l.socket,
    })
}

/// Dialogs as `dlg.list` prints them: kamcmd's structures (a profile with a value as a
/// `name: value` line), or in JSON the same fields with the profiles as `{name, value}`
/// objects (`value` null for a profile without values) and the variables as an object.
fn dialog_reply(ds: &[DialogInfo]) -> Reply {
    Reply::Both {
        text: Box::new(Reply::Structs(
            ds.iter()
                .map(|d| dialog_value(d, Value::from(d.profiles.clone())))
                .collect(),
        )),
        json: ds
            .iter()
            .map(|d| dialog_value(d, d.profiles.iter().map(|p| profile_value(p)).collect()))
            .collect(),
    }
}

/// A profile membership, `name` or `name: value` (profile names are letters, digits and `_`,
/// so the first `: ` ends the name), as `{name, value}`.
fn profile_value(p: &str) -> Value {
    match p.split_once(": ") {
        Some((name, value)) => json!({"name": name, "value": value}),
        None => json!({"name": p, "value": null}),
    }
}

/// A dialog with the fields and in the order of Kamailio's `dlg.list`.
fn dialog_value(d: &DialogInfo, profiles: Value) -> Value {
    json!({
        "h_entry": d.h_entry,
        "h_id": d.h_id,
        "ref": 1,
        "call-id": d.call_id,
        "from_uri": d.from_uri,
        "to_uri": d.to_uri,
        "state": d.state,
        "start_ts": d.start_ts,
        "init_ts": d.init_ts,
        "end_ts": d.end_ts,
        "duration": d.duration,
        "timeout": d.timeout,
        "lifetime": d.lifetime,
        "dflags": 0,
        "sflags": 0,
        "iflags": 0,
        "caller": leg_value(&d.caller),
        "callee": leg_value(&d.callee),
        "profiles": profiles,
        "variables": d.variables.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

/// A verb of the table, for `system.listMethods` and `system.methodHelp` in JSON.
fn verb_value(v: &table::Verb) -> Value {
    json!({"name": v.name, "arguments": v.args, "description": v.help})
}

/// `siplb <version>`, the version of this binary.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn version() -> String {
    format!("siplb {}", env!("CARGO_PKG_VERSION"))
}

/// Unix second `t` in local time as C's `ctime` writes it (`Thu Nov 13 10:04:05 2025`), the
/// way Kamailio's `core.uptime` prints its times.
pub fn ctime(t: u64) -> String {
    let t = t as libc::time_t;
    let mut buf = [0 as libc::c_char; 32];
    // SAFETY: `buf` is larger than the 26 bytes ctime_r writes at most.
    let p = unsafe { libc::ctime_r(&t, buf.as_mut_ptr()) };
    if p.is_null() {
        return t.to_string();
    }
    // SAFETY: ctime_r wrote a NUL-terminated string into `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{DialogInfo, LegInfo};

    /// `extra_hdrs` as kamcmd users write them: lines apart by a written `\r\n` (the
    /// request is one line), spaces kept; siplb's own headers and non-headers refused.
    #[test]
    fn extra_headers_are_header_lines_apart_by_crlf() {
        let x = extra_headers(&[
            "Reason:",
            "SIP;cause=200;text=\"operator\"\\r\\nX-Who:",
            "noc",
        ]);
        assert_eq!(
            &*x.unwrap(),
            b"Reason: SIP;cause=200;text=\"operator\"\r\nX-Who: noc\r\n"
        );
        assert_eq!(&*extra_headers(&[]).unwrap(), b"");
        for (bad, why) in [
            ("Call-ID: x", "writes `Call-ID` itself"),
            ("v: SIP/2.0/UDP h", "writes `v` itself"),
            ("no colon", "not a `Name: value` header line"),
            ("Bad Name: x", "not a header name"),
        ] {
            let e = extra_headers(&[bad]).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(extra_headers(&[&"a".repeat(1100)]).is_err());
    }

    fn leg(tag: &str) -> LegInfo {
        LegInfo {
            tag: tag.into(),
            contact: "sip:a@h".into(),
            cseq: 1,
            route_set: String::new(),
            socket: "udp:127.0.0.1:5060".into(),
        }
    }

    fn info() -> DialogInfo {
        DialogInfo {
            h_entry: 1,
            h_id: 7,
            call_id: "c1".into(),
            from_uri: "sip:A@h".into(),
            to_uri: "sip:B@h".into(),
            state: 4,
            start_ts: 10,
            init_ts: 9,
            end_ts: 0,
            duration: 3,
            timeout: 100,
            lifetime: 43200,
            caller: leg("t1"),
            callee: leg("t2"),
            profiles: vec!["account: A: b".into(), "total".into()],
            variables: vec![("SetupTime".into(), "9".into())],
        }
    }

    #[test]
    fn dialogs_in_json_are_structured_all_the_way_down() {
        let r = dialog_reply(&[info()]);
        let v: Value = serde_json::from_str(&r.render(true)).unwrap();
        assert_eq!(
            v[0]["profiles"],
            json!([{"name": "account", "value": "A: b"}, {"name": "total", "value": null}])
        );
        assert_eq!(v[0]["variables"], json!({"SetupTime": "9"}));
        assert_eq!(v[0]["caller"]["tag"], "t1");
        // kamcmd's format is unchanged.
        let text = r.render(false);
        assert!(
            text.contains("\tprofiles: {\n\t\taccount: A: b\n\t\ttotal\n\t}\n"),
            "{text}"
        );
        assert!(
            text.contains("\tvariables: {\n\t\tSetupTime: 9\n\t}\n"),
            "{text}"
        );
    }

    #[test]
    fn ctime_is_c_ctime() {
        let s = ctime(0);
        // Local time: the epoch is 1969 or 1970 depending on the zone.
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with("1970") || s.ends_with("1969"), "{s}");
    }
}

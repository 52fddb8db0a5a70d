//! One reader per section of the file: each checks its keys and returns what [`Config`]
//! takes from them. `[dialog]`'s profiles, rules and variables are in `dialog.rs`.
//!
//! [`Config`]: super::Config

use super::file::GatewayFile;
use super::file::{Control, CustomerFile, DialogFile, Events, GatewaySet, Limits, Listen, Metrics};
use super::file::{Log, RouteFile, TimersFile, Workers};
use super::{ConfigError, Invalid};
use crate::logging::{LogConfig, LogFormat};
use crate::proxy::{AccountKey, Cidr, Customer, DialogTimers, LimitReply, Timers};
use crate::proxy::{
    Algorithm, Credentials, Gateway, Gateways, Numbers, ProbeConfig, Secret, SetRoute, Target,
};
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// `[listen]`: the one UDP address, a concrete one.
pub(super) fn listen(l: &Listen, invalid: Invalid<'_>) -> Result<SocketAddr, ConfigError> {
    let listen = l.sip.get_ref();
    if listen.len() != 1 {
        return Err(invalid(
            l.sip.span(),
            "listen.sip",
            "exactly one UDP listen address is supported in this version".into(),
        ));
    }
    let addr: SocketAddr = listen[0].get_ref().parse().map_err(|_| {
        invalid(
            listen[0].span(),
            "listen.sip",
            format!("`{}` is not an ip:port", listen[0].get_ref()),
        )
    })?;
    if addr.ip().is_unspecified() {
        return Err(invalid(
            l.sip.span(),
            "listen.sip",
            "a wildcard address cannot be put in Via/Record-Route; listen on a concrete address"
                .into(),
        ));
    }
    Ok(addr)
}

/// `[control]`: the socket's mode (octal string, permission bits only) and its group's id
/// (the name looked up now, so that `--check` reports an unknown group).
pub(super) fn control(
    c: &Control,
    invalid: Invalid<'_>,
) -> Result<(u32, Option<u32>), ConfigError> {
    let mode = match &c.mode {
        None => super::DEFAULT_CONTROL_MODE,
        Some(m) => {
            let text = m.get_ref().trim();
            match u32::from_str_radix(text, 8) {
                Ok(v) if !text.is_empty() && v <= 0o777 => v,
                _ => {
                    return Err(invalid(
                        m.span(),
                        "control.mode",
                        format!(
                            "`{text}` is not an octal file mode from 0000 to 0777 (e.g. \"0660\")"
                        ),
                    ));
                }
            }
        }
    };
    let gid = match &c.group {
        None => None,
        Some(g) => Some(group_id(g.get_ref()).ok_or_else(|| {
            invalid(
                g.span(),
                "control.group",
                format!("no group named `{}` on this system", g.get_ref()),
            )
        })?),
    };
    Ok((mode, gid))
}

/// The id of the group called `name` (`getgrnam_r`).
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: plain C structures filled by getgrnam_r into `grp` and `buf`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        let r = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return (r == 0 && !out.is_null()).then_some(grp.gr_gid);
    }
}

/// Workers a configuration may ask for at most: each has its own socket, rings and tables
/// (about 15 MB), so a mistyped count would otherwise take the machine's memory.
pub const MAX_WORKERS: usize = 1024;
/// The receive buffer's bounds: a datagram of a usual path MTU fits, and no UDP datagram is
/// longer than the largest.
pub const MIN_RECV_BUFFER_SIZE: u32 = 1500;
pub const MAX_RECV_BUFFER_SIZE: u32 = 65536;

/// `[workers]`: how many (0 = one per core); the receive buffers' count and size are
/// checked.
pub(super) fn workers(w: &Workers, invalid: Invalid<'_>) -> Result<usize, ConfigError> {
    if !w.recv_buffers.get_ref().is_power_of_two() {
        return Err(invalid(
            w.recv_buffers.span(),
            "workers.recv_buffers",
            "must be a power of two".into(),
        ));
    }
    let size = *w.recv_buffer_size.get_ref();
    if !(MIN_RECV_BUFFER_SIZE..=MAX_RECV_BUFFER_SIZE).contains(&size) {
        return Err(invalid(
            w.recv_buffer_size.span(),
            "workers.recv_buffer_size",
            format!("{size} bytes: must be {MIN_RECV_BUFFER_SIZE} to {MAX_RECV_BUFFER_SIZE}"),
        ));
    }
    Ok(match *w.count.get_ref() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n if n > MAX_WORKERS => {
            return Err(invalid(
                w.count.span(),
                "workers.count",
                format!("{n}: at most {MAX_WORKERS} (0: one per core)"),
            ));
        }
        n => n,
    })
}

/// `[[customer]]`: each needs sources, domains or both.
pub(super) fn customers(
    list: &[CustomerFile],
    invalid: Invalid<'_>,
) -> Result<Vec<Customer>, ConfigError> {
    let mut customers: Vec<Customer> = Vec::new();
    for c in list {
        // A customer is known by its name across reloads (its accounts' counts follow it).
        if customers
            .iter()
            .any(|known| known.name == *c.name.get_ref())
        {
            return Err(invalid(
                c.name.span(),
                "customer.name",
                format!("a second customer named `{}`", c.name.get_ref()),
            ));
        }
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(
                s.get_ref()
                    .parse::<Cidr>()
                    .map_err(|m| invalid(s.span(), "customer.sources", m))?,
            );
        }
        if sources.is_empty() && c.domains.is_empty() {
            return Err(invalid(
                c.name.span(),
                "customer",
                format!(
                    "customer `{}` needs `sources` or `domains`",
                    c.name.get_ref()
                ),
            ));
        }
        let account_key = match c.account_key.get_ref().as_str() {
            "customer" => AccountKey::Customer,
            "from_user" => AccountKey::FromUser,
            "from_domain" => AccountKey::FromDomain,
            other => {
                return Err(invalid(
                    c.account_key.span(),
                    "customer.account_key",
                    format!("`{other}` is not one of customer, from_user, from_domain"),
                ));
            }
        };
        customers.push(Customer {
            slot: customers.len().min(usize::from(u16::MAX - 1)) as u16,
            name: c.name.get_ref().clone(),
            sources,
            domains: c.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            account_key,
            numbers: numbers(c, invalid)?,
            targets: targets(c, invalid)?,
        });
    }
    Ok(customers)
}

/// `customer.numbers`: prefixes of digits (and `+`), or `from-to` ranges of one length.
fn numbers(c: &CustomerFile, invalid: Invalid<'_>) -> Result<Vec<Numbers>, ConfigError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'+');
    let mut out = Vec::new();
    for n in &c.numbers {
        let text = n.get_ref().trim();
        let bad = |why: &str| invalid(n.span(), "customer.numbers", format!("`{text}`: {why}"));
        match text.split_once('-') {
            None if digits(text) => out.push(Numbers::Prefix(text.into())),
            None => return Err(bad("not a prefix of digits or a from-to range")),
            Some((lo, hi)) => {
                let (lo, hi) = (lo.trim(), hi.trim());
                if !digits(lo) || !digits(hi) || lo.len() != hi.len() || lo > hi {
                    return Err(bad(
                        "a range is two numbers of the same length, the lower first",
                    ));
                }
                out.push(Numbers::Range(lo.into(), hi.into()));
            }
        }
    }
    if !out.is_empty() && c.targets.is_empty() {
        return Err(invalid(
            c.name.span(),
            "customer.targets",
            format!(
                "customer `{}` owns numbers but has no targets to send their calls to",
                c.name.get_ref()
            ),
        ));
    }
    Ok(out)
}

/// `customer.targets`: `ip:port`s.
fn targets(c: &CustomerFile, invalid: Invalid<'_>) -> Result<Vec<Target>, ConfigError> {
    c.targets
        .iter()
        .map(|t| {
            t.get_ref().parse().map(Target::udp).map_err(|_| {
                invalid(
                    t.span(),
                    "customer.targets",
                    format!("`{}` is not an ip:port", t.get_ref()),
                )
            })
        })
        .collect()
}

/// `[[gateway_set]]` (each gateway once per set, names unique) and `[[route]]` (each naming
/// a set and, when it says so, a customer that exist).
pub(super) fn gateways(
    sets: &[GatewaySet],
    routes: &[RouteFile],
    customers: &[Customer],
    invalid: Invalid<'_>,
) -> Result<Gateways, ConfigError> {
    let mut all = Gateways::default();
    for set in sets {
        if all.sets.iter().any(|s| s.name == *set.name.get_ref()) {
            return Err(invalid(
                set.name.span(),
                "gateway_set.name",
                format!("gateway set `{}` is defined twice", set.name.get_ref()),
            ));
        }
        all.sets.push(gateway_set(set, invalid)?);
    }
    all.share_states();
    for r in routes {
        let name = r.gateway_set.get_ref();
        let Some(set) = all.sets.iter().position(|s| s.name == *name) else {
            return Err(invalid(
                r.gateway_set.span(),
                "route.gateway_set",
                format!("no gateway set named `{name}`"),
            ));
        };
        if let Some(c) = &r.customer
            && !customers.iter().any(|x| x.name == *c.get_ref())
        {
            return Err(invalid(
                c.span(),
                "route.customer",
                format!("no customer named `{}`", c.get_ref()),
            ));
        }
        all.routes.push(SetRoute {
            set,
            customer: r.customer.as_ref().map(|c| c.get_ref().clone()),
            account: r.account.clone(),
            prefix: r.prefix.clone(),
        });
    }
    Ok(all)
}

/// A gateway's credentials: `user` with `password` or `ha1` (32 hex digits), or none.
fn credentials(g: &GatewayFile, invalid: Invalid<'_>) -> Result<Option<Credentials>, ConfigError> {
    Ok(match (&g.user, &g.password, &g.ha1) {
        (None, None, None) => None,
        (Some(u), Some(p), None) => Some(Credentials {
            user: u.get_ref().clone(),
            secret: Secret::Password(p.get_ref().clone()),
        }),
        (Some(u), None, Some(h)) => {
            let hex = h.get_ref();
            if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    h.span(),
                    "gateway_set.gateway.ha1",
                    "must be 32 hex digits: MD5(user:realm:password)".into(),
                ));
            }
            Some(Credentials {
                user: u.get_ref().clone(),
                secret: Secret::Ha1(hex.to_ascii_lowercase()),
            })
        }
        (Some(_), Some(p), Some(_)) => {
            return Err(invalid(
                p.span(),
                "gateway_set.gateway.password",
                "give `password` or `ha1`, not both".into(),
            ));
        }
        (Some(u), None, None) => {
            return Err(invalid(
                u.span(),
                "gateway_set.gateway.user",
                "needs `password` or `ha1`".into(),
            ));
        }
        (None, Some(s), _) | (None, None, Some(s)) => {
            return Err(invalid(
                s.span(),
                "gateway_set.gateway.user",
                "credentials need a `user`".into(),
            ));
        }
    })
}

fn gateway_set(
    set: &GatewaySet,
    invalid: Invalid<'_>,
) -> Result<crate::proxy::GatewaySet, ConfigError> {
    let mut gateways = crate::proxy::GatewaySet {
        name: set.name.get_ref().clone(),
        ..crate::proxy::GatewaySet::default()
    };
    gateways.algorithm = Algorithm::parse(set.algorithm.get_ref()).ok_or_else(|| {
        let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        invalid(
            set.algorithm.span(),
            "gateway_set.algorithm",
            format!(
                "`{}` is not one of {}",
                set.algorithm.get_ref(),
                names.join(", ")
            ),
        )
    })?;
    let address = |g: &Spanned<String>, key: &str| -> Result<SocketAddr, ConfigError> {
        g.get_ref().parse().map_err(|_| {
            invalid(
                g.span(),
                key,
                format!("`{}` is not an ip:port", g.get_ref()),
            )
        })
    };
    let mut add = |gw: Gateway, at: &Spanned<String>, key: &str| -> Result<(), ConfigError> {
        // Twice in a set would give it twice the share of the calls, silently.
        if gateways
            .gateways
            .iter()
            .any(|x| x.target.addr == gw.target.addr)
        {
            return Err(invalid(
                at.span(),
                key,
                format!(
                    "`{}` is listed twice in gateway set `{}`",
                    at.get_ref(),
                    set.name.get_ref()
                ),
            ));
        }
        gateways.gateways.push(gw);
        Ok(())
    };
    for g in &set.gateways {
        let a = address(g, "gateway_set.gateways")?;
        add(Gateway::udp(a), g, "gateway_set.gateways")?;
    }
    for g in &set.gateway {
        let a = address(&g.address, "gateway_set.gateway.address")?;
        let mut gw = Gateway::udp(a);
        gw.weight = g.weight;
        gw.priority = g.priority;
        gw.match_ip_only = g.match_ip_only;
        if let Some(m) = &g.max_calls {
            if *m.get_ref() == 0 {
                return Err(invalid(
                    m.span(),
                    "gateway_set.gateway.max_calls",
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
            gw.max_calls = Some(*m.get_ref());
        }
        gw.credentials = credentials(g, invalid)?;
        add(gw, &g.address, "gateway_set.gateway.address")?;
    }
    if gateways.gateways.is_empty() {
        return Err(invalid(
            set.name.span(),
            "gateway_set.gateways",
            format!(
                "gateway set `{}` has no gateways (`gateways` or `[[gateway_set.gateway]]`)",
                set.name.get_ref()
            ),
        ));
    }
    gateways.failover = set.failover;
    if let Some(codes) = &set.failover_codes {
        if let Some(bad) = codes.get_ref().iter().find(|c| !(500..=599).contains(*c)) {
            return Err(invalid(
                codes.span(),
                "gateway_set.failover_codes",
                format!(
                    "{bad} is not a 5xx: a call moves on after a server failure (a timeout \
                     and 408 always move it on); a 4xx or 6xx is the callee's answer"
                ),
            ));
        }
        gateways.failover_codes = codes.get_ref().clone();
    }
    match set.failover_timeout_ms.as_ref().map(|ms| *ms.get_ref()) {
        Some(0) => gateways.failover_timeout = None,
        Some(ms) => gateways.failover_timeout = Some(Duration::from_millis(ms)),
        None => {}
    }
    if let Some(map) = &set.answers_from {
        let key = "gateway_set.answers_from";
        for (gw, others) in map.get_ref() {
            let bad = |what: &str| invalid(map.span(), key, format!("`{what}` is not an ip:port"));
            let addr: SocketAddr = gw.parse().map_err(|_| bad(gw))?;
            let Some(g) = gateways.gateways.iter_mut().find(|g| g.target.addr == addr) else {
                return Err(invalid(
                    map.span(),
                    key,
                    format!("`{gw}` is not one of this set's gateways"),
                ));
            };
            for o in others {
                g.answers_from.push(o.parse().map_err(|_| bad(o))?);
            }
        }
    }
    gateways.probe = probe(set, invalid)?;
    for g in &gateways.gateways {
        g.state.health.set_probing(gateways.probe.is_some());
    }
    Ok(gateways)
}

/// The probing keys of a `[[gateway_set]]`: none when `probe_interval_ms` is 0 (the others
/// are checked all the same).
fn probe(set: &GatewaySet, invalid: Invalid<'_>) -> Result<Option<ProbeConfig>, ConfigError> {
    let interval = *set.probe_interval_ms.get_ref();
    let mut p = ProbeConfig::every(Duration::from_millis(interval));
    if let Some(t) = &set.probe_timeout_ms {
        if *t.get_ref() == 0 {
            return Err(invalid(
                t.span(),
                "gateway_set.probe_timeout_ms",
                "must be > 0".into(),
            ));
        }
        p.timeout = Duration::from_millis(*t.get_ref());
    }
    for (v, key, field) in [
        (
            &set.probe_down_after,
            "gateway_set.probe_down_after",
            &mut p.thresholds.down_after,
        ),
        (
            &set.probe_up_after,
            "gateway_set.probe_up_after",
            &mut p.thresholds.up_after,
        ),
    ] {
        if let Some(v) = v {
            if *v.get_ref() == 0 {
                return Err(invalid(v.span(), key, "must be at least 1".into()));
            }
            *field = *v.get_ref();
        }
    }
    if let Some(codes) = &set.probe_fail_codes {
        if let Some(bad) = codes.get_ref().iter().find(|c| !(300..=699).contains(*c)) {
            let why = if (200..300).contains(bad) {
                "a 2xx always shows the gateway alive"
            } else {
                "not a final reply code"
            };
            return Err(invalid(
                codes.span(),
                "gateway_set.probe_fail_codes",
                format!("{bad}: {why} (failure codes are 300–699)"),
            ));
        }
        p.fail_codes = codes.get_ref().clone();
    }
    if let Some(f) = &set.probe_from {
        if !f.get_ref().starts_with("sip:") || f.get_ref().contains(['<', '>', ' ', '\r', '\n']) {
            return Err(invalid(
                f.span(),
                "gateway_set.probe_from",
                format!("`{}` is not a sip: URI", f.get_ref()),
            ));
        }
        p.from = Some(f.get_ref().clone());
    }
    Ok((interval > 0).then_some(p))
}

/// `[timers]`: the transaction timers (the call linger time is read with them).
pub(super) fn timers(t: &TimersFile, invalid: Invalid<'_>) -> Result<Timers, ConfigError> {
    let (t1, t2) = (*t.t1_ms.get_ref(), *t.t2_ms.get_ref());
    if t1 == 0 {
        return Err(invalid(
            t.t1_ms.span(),
            "timers.t1_ms",
            "must be > 0".into(),
        ));
    }
    if t2 < t1 {
        // At whichever of the two the file sets (t2_ms when both).
        let (span, key) = if t.t2_ms.span() != (0..0) || t.t1_ms.span() == (0..0) {
            (t.t2_ms.span(), "timers.t2_ms")
        } else {
            (t.t1_ms.span(), "timers.t1_ms")
        };
        return Err(invalid(
            span,
            key,
            format!("t2_ms ({t2}) must be >= t1_ms ({t1})"),
        ));
    }
    let ms = Duration::from_millis;
    Ok(Timers {
        t1: ms(t1),
        t2: ms(t2),
        t4: ms(*t.t4_ms.get_ref()),
        timer_b: ms(*t.timer_b_ms.get_ref()),
        timer_c: ms(*t.timer_c_ms.get_ref()),
        timer_d: ms(*t.timer_d_ms.get_ref()),
    })
}

/// `[dialog]`'s timeouts.
pub(super) fn dialog_timers(
    d: &DialogFile,
    invalid: Invalid<'_>,
) -> Result<DialogTimers, ConfigError> {
    let keys = [
        (&d.default_timeout_s, "dialog.default_timeout_s"),
        (&d.early_timeout_s, "dialog.early_timeout_s"),
        (&d.noack_timeout_s, "dialog.noack_timeout_s"),
    ];
    for (v, key) in keys {
        if *v.get_ref() == 0 {
            return Err(invalid(v.span(), key, "must be > 0".into()));
        }
    }
    Ok(DialogTimers {
        default_timeout: Duration::from_secs(*d.default_timeout_s.get_ref()),
        early_timeout: Duration::from_secs(*d.early_timeout_s.get_ref()),
        noack_timeout: Duration::from_secs(*d.noack_timeout_s.get_ref()),
    })
}

/// `[events]`: the URL `Call_End` events are POSTed to, if any; the queue is checked.
pub(super) fn events(e: &Events, invalid: Invalid<'_>) -> Result<Option<String>, ConfigError> {
    if let Some(u) = &e.http_post
        && !u.get_ref().starts_with("http://")
    {
        return Err(invalid(
            u.span(),
            "events.http_post",
            format!("`{}` is not an http:// URL", u.get_ref()),
        ));
    }
    if *e.queue.get_ref() == 0 {
        return Err(invalid(
            e.queue.span(),
            "events.queue",
            "must be at least 1".into(),
        ));
    }
    Ok(e.http_post.as_ref().map(|u| u.get_ref().clone()))
}

/// `[limits]` (but its profiles, read with the dialog's): the reply over a limit; the table
/// and queue sizes are checked.
pub(super) fn limits(l: &Limits, invalid: Invalid<'_>) -> Result<LimitReply, ConfigError> {
    for (v, key) in [
        (&l.account_table, "limits.account_table"),
        (&l.value_table, "limits.value_table"),
    ] {
        if *v.get_ref() == 0 {
            return Err(invalid(v.span(), key, "must be at least 1".into()));
        }
    }
    let code = *l.reply_code.get_ref();
    if !(400..=699).contains(&code) {
        return Err(invalid(
            l.reply_code.span(),
            "limits.reply_code",
            format!("{code} is not a final error code (400 to 699)"),
        ));
    }
    if l.reply_reason.get_ref().contains(['\r', '\n']) {
        return Err(invalid(
            l.reply_reason.span(),
            "limits.reply_reason",
            "must be one line".into(),
        ));
    }
    if *l.queue_per_worker.get_ref() == 0 {
        return Err(invalid(
            l.queue_per_worker.span(),
            "limits.queue_per_worker",
            "must be at least 1".into(),
        ));
    }
    Ok(LimitReply {
        code,
        reason: l.reply_reason.get_ref().clone(),
        q850_cause: Some(l.reply_q850_cause).filter(|c| *c != 0),
    })
}

/// `[metrics]`: the Prometheus endpoint, if any.
pub(super) fn metrics(
    m: &Metrics,
    invalid: Invalid<'_>,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(a) = &m.listen else { return Ok(None) };
    a.get_ref().parse().map(Some).map_err(|_| {
        invalid(
            a.span(),
            "metrics.listen",
            format!("`{}` is not an ip:port", a.get_ref()),
        )
    })
}

/// `[log]`: the level (checked: a misspelt level would silence everything), the format.
pub(super) fn log(l: &Log, invalid: Invalid<'_>) -> Result<LogConfig, ConfigError> {
    crate::logging::check_level(l.level.get_ref())
        .map_err(|m| invalid(l.level.span(), "log.level", m))?;
    let format = match l.format.get_ref().as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                l.format.span(),
                "log.format",
                format!("`{other}` is not one of text, json"),
            ));
        }
    };
    Ok(LogConfig {
        level: l.level.get_ref().trim().into(),
        format,
        calls_per_second: l.calls_per_second,
    })
}

#[cfg(test)]
mod control_tests {
    use super::super::{Config, ConfigError, DEFAULT_CONTROL_MODE};
    use std::path::Path;

    fn parse(control: &str) -> Result<Config, ConfigError> {
        let src = format!(
            "[listen]\nsip = [\"127.0.0.1:5060\"]\n\n[control]\n{control}\n\n\
             [[customer]]\nname = \"local\"\nsources = [\"127.0.0.1/32\"]\n\n\
             [[gateway_set]]\nname = \"trunk\"\ngateways = [\"127.0.0.1:5081\"]\n"
        );
        Config::parse(Path::new("/etc/siplb/t.toml"), &src)
    }

    #[test]
    fn control_mode_defaults_to_0660_and_reads_octal() {
        let c = parse("").unwrap();
        assert_eq!((c.control_mode, c.control_group), (0o660, None));
        assert_eq!(DEFAULT_CONTROL_MODE, 0o660);
        assert_eq!(parse("mode = \"0600\"").unwrap().control_mode, 0o600);
        assert_eq!(parse("mode = \"770\"").unwrap().control_mode, 0o770);
    }

    #[test]
    fn bad_control_mode_is_an_error_naming_the_key() {
        for bad in ["\"0888\"", "\"rw-rw----\"", "\"4660\"", "\"\""] {
            let e = parse(&format!("mode = {bad}")).unwrap_err().to_string();
            assert!(
                e.starts_with("/etc/siplb/t.toml:5: `control.mode`"),
                "{bad}: {e}"
            );
        }
    }

    /// A path longer than a Unix socket's address holds fails `--check`, not the start.
    #[test]
    fn a_control_socket_path_too_long_for_a_unix_socket_is_an_error_naming_the_key() {
        let long = format!("/run/{}/siplb.ctl", "d".repeat(92));
        assert_eq!(long.len(), 107);
        assert!(parse(&format!("socket = \"{long}\"")).is_ok());
        let longer = format!("/run/{}/siplb.ctl", "d".repeat(93));
        let e = parse(&format!("socket = \"{longer}\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/siplb/t.toml:5: `control.socket`: ") && e.contains("108 bytes"),
            "{e}"
        );
    }

    #[test]
    fn control_group_is_looked_up_and_an_unknown_one_is_an_error_naming_the_key() {
        // The group of gid 0 exists everywhere (`root`, or `wheel`).
        let root = super::group_id("root").or_else(|| super::group_id("wheel"));
        assert_eq!(root, Some(0));
        let c = parse("group = \"root\"").unwrap();
        assert_eq!(c.control_group, Some(0));
        let e = parse("group = \"no-such-group-siplb\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "/etc/siplb/t.toml:5: `control.group`: no group named `no-such-group-siplb`"
            ),
            "{e}"
        );
    }
}

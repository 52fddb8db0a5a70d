//! Reload without restart (`siplb ctl cfg.reload`, SIGHUP): the configuration file is read
//! and checked again (`--check` rules), compared with the running one, and what can change
//! live is handed to every worker — customers, the gateway set, the classification rules,
//! limits and their maxima (the counts are kept: live dialogs stay counted), timers, the limit
//! reply, dialog variables — plus the XDP guard's allow list and the log level. What cannot
//! change live is refused, naming the key, and then nothing changes. Live dialogs keep what
//! they were admitted with.

mod changes;

use crate::config::Config;
use crate::proxy::dialogs::saved::REMOVED_CUSTOMER;
use crate::proxy::gateway::GatewayState;
use crate::proxy::{Customer, LiveGateways, ProxyConfig, Target};
use crate::steering::XdpGuard;
use crate::worker::{ControlJob, WorkerHandle};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// What a reload needs: the running configuration and where to hand the new one.
pub struct Reloader {
    path: PathBuf,
    running: Mutex<Running>,
    workers: Vec<Arc<WorkerHandle>>,
    guard: Arc<OnceLock<Arc<XdpGuard>>>,
    /// The gateway sets in force, for the control and metrics threads.
    live: Arc<LiveGateways>,
}

/// What the running configuration is.
struct Running {
    cfg: Config,
    proxy: Arc<ProxyConfig>,
    /// The file as it was applied, for saying what a reload changes.
    file: toml::Table,
    /// Gateways a reload removed, while calls still hold their state: one added back takes
    /// it again, so that its calls under way still count for `max_calls`.
    retired: Retired,
}

/// The states of removed gateways, by address, as long as something holds them.
pub type Retired = Vec<(Target, Weak<GatewayState>)>;

/// The configuration file at `path`, read once: its text, checked and parsed.
fn read(path: &std::path::Path) -> Result<(Config, toml::Table), String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = Config::parse(path, &src).map_err(|e| e.to_string())?;
    let file = src.parse().map_err(|e: toml::de::Error| e.to_string())?;
    Ok((cfg, file))
}

impl Reloader {
    pub fn new(
        cfg: &Config,
        proxy: Arc<ProxyConfig>,
        workers: Vec<Arc<WorkerHandle>>,
        guard: Arc<OnceLock<Arc<XdpGuard>>>,
    ) -> Reloader {
        Reloader {
            path: cfg.path.clone(),
            live: Arc::new(LiveGateways::new(proxy.routing.gateways.clone())),
            running: Mutex::new(Running {
                cfg: cfg.clone(),
                proxy,
                // The file as read at start (a file changed since reads as changed later).
                file: read(&cfg.path).map(|r| r.1).unwrap_or_default(),
                retired: Vec::new(),
            }),
            workers,
            guard,
        }
    }

    /// The gateway sets in force (replaced on every reload).
    pub fn live(&self) -> Arc<LiveGateways> {
        self.live.clone()
    }

    /// Reads, checks and applies the configuration file; what was applied, or why nothing
    /// was.
    pub fn reload(&self) -> Result<Reloaded, String> {
        logged((|| {
            let (new, file) = read(&self.path)?;
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            self.apply(&mut running, new, file, "reloaded")
        })())
    }

    /// `dispatcher.reload` (Kamailio's habit): reads the configuration file, checks it whole,
    /// and applies only its gateway sets and routes; everything else stays as it runs.
    pub fn reload_gateways(&self) -> Result<Reloaded, String> {
        logged((|| {
            let (from_file, file) = read(&self.path)?;
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let mut new = running.cfg.clone();
            new.proxy.routing.gateways = from_file.proxy.routing.gateways;
            // What runs now: the file as applied before, with the file's gateway sets and
            // routes.
            let mut applied = running.file.clone();
            for key in ["gateway_set", "route"] {
                match file.get(key) {
                    Some(v) => applied.insert(key.into(), v.clone()),
                    None => applied.remove(key),
                };
            }
            self.apply(&mut running, new, applied, "gateway sets reloaded")
        })())
    }

    /// Hands `new` to the workers (and the XDP guard, the log level) if it can change live.
    fn apply(
        &self,
        running: &mut Running,
        new: Config,
        file: toml::Table,
        what: &str,
    ) -> Result<Reloaded, String> {
        let proxy = next_proxy(&running.cfg, &running.proxy, &running.retired, &new)
            .map_err(|e| name_section_keys(e, &running.file, &file))?;
        let proxy = Arc::new(proxy);
        // Every worker takes it between two batches; a worker too busy to answer within a
        // second takes it at its next wake-up all the same.
        let (tx, rx) = std::sync::mpsc::sync_channel(self.workers.len());
        for w in &self.workers {
            let job = ControlJob::Reconfigure {
                cfg: proxy.clone(),
                reply: tx.clone(),
            };
            if w.control.push(job).is_err() {
                return Err("a worker's control queue is full; try again".into());
            }
        }
        drop(tx);
        for _ in &self.workers {
            if rx.recv_timeout(Duration::from_secs(1)).is_err() {
                break;
            }
        }
        if let Some(g) = self.guard.get() {
            let (was, now) = (allow_list(&running.proxy), allow_list(&proxy));
            for net in was.iter().filter(|n| !now.contains(n)) {
                g.disallow(*net);
            }
            for net in now {
                if let Err(e) = g.allow(net) {
                    tracing::warn!("reload: XDP guard allow-list {net}: {e}");
                }
            }
        }
        if new.log.level != running.cfg.log.level
            && let Err(e) = crate::logging::set_level(&new.log.level)
        {
            tracing::warn!("reload: log level: {e}");
        }
        let summary = Reloaded {
            file: self.path.display().to_string(),
            what: what.to_string(),
            changed: changes::keys(&running.file, &file),
            customers: proxy.routing.customers.len(),
            gateways: proxy.routing.gateways.distinct(),
            rules: proxy.rules.len(),
        };
        running.retired = retire(&running.proxy, &running.retired, &proxy);
        self.live.set(proxy.routing.gateways.clone());
        running.cfg = new;
        running.proxy = proxy;
        running.file = file;
        tracing::info!("{summary}");
        Ok(summary)
    }
}

/// What a reload applied: the line siplb logs and `cfg.reload` prints
/// (`siplb.toml: reloaded: changed: timers.t1_ms; 2 customers, 3 gateways, 1 rules`), and
/// its parts for `--json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub file: String,
    /// `reloaded`, or `gateway sets reloaded`.
    pub what: String,
    /// The dotted keys and named tables that changed ([`changes::keys`]).
    pub changed: Vec<String>,
    pub customers: usize,
    pub gateways: usize,
    pub rules: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let changed = match self.changed.is_empty() {
            true => "nothing changed".to_string(),
            false => format!("changed: {}", self.changed.join(", ")),
        };
        write!(
            f,
            "{}: {}: {changed}; {} customers, {} gateways, {} rules",
            self.file, self.what, self.customers, self.gateways, self.rules
        )
    }
}

/// A refused reload in siplb's own log too, whoever asked (SIGHUP or `siplb ctl`).
fn logged<T>(r: Result<T, String>) -> Result<T, String> {
    if let Err(e) = &r {
        tracing::error!("reload: {e}; the running configuration is kept");
    }
    r
}

/// The networks the XDP guard exempts from the flood limit: customers' (their sources and
/// the targets their calls from trunks go to) and gateways'.
pub fn allow_list(proxy: &ProxyConfig) -> Vec<ipnet::Ipv4Net> {
    let routing = &proxy.routing;
    let v4 = |a: std::net::SocketAddr| match a.ip() {
        std::net::IpAddr::V4(a) => Some(ipnet::Ipv4Net::from(a)),
        std::net::IpAddr::V6(_) => None,
    };
    routing
        .customers
        .iter()
        .flat_map(|c| {
            c.sources
                .iter()
                .filter_map(|s| s.ipv4())
                .chain(c.targets.iter().filter_map(|t| v4(t.addr)))
        })
        .chain(routing.gateways.addresses().filter_map(v4))
        .collect()
}

/// The gateways' states to keep for a later reload: those of gateways `running` had and
/// `next` has not, and those `retired` already kept, while calls hold them.
fn retire(running: &ProxyConfig, retired: &Retired, next: &ProxyConfig) -> Retired {
    let all = |p: &ProxyConfig| -> Vec<(Target, Weak<GatewayState>)> {
        p.routing
            .gateways
            .sets
            .iter()
            .flat_map(|s| &s.gateways)
            .map(|g| (g.target, Arc::downgrade(&g.state)))
            .collect()
    };
    let kept: Vec<Target> = all(next).into_iter().map(|(t, _)| t).collect();
    let mut out: Retired = Vec::new();
    for (t, w) in all(running).into_iter().chain(retired.iter().cloned()) {
        if !kept.contains(&t) && !out.iter().any(|(o, _)| *o == t) && w.strong_count() > 0 {
            out.push((t, w));
        }
    }
    out
}

/// The shards' configuration after a reload from `new`, or why not: the keys that cannot
/// change live must not have, and the profiles take the new limits in place. A gateway
/// kept, or added back while its calls from before are up (`retired`), keeps its state.
pub fn next_proxy(
    old: &Config,
    running: &ProxyConfig,
    retired: &Retired,
    new: &Config,
) -> Result<ProxyConfig, String> {
    let fixed = |key: &str, was: String, now: String| -> Result<(), String> {
        if was == now {
            Ok(())
        } else {
            Err(format!(
                "`{key}` cannot change without a restart (`{was}` now, `{now}` in the file); \
                 nothing was reloaded"
            ))
        }
    };
    // The keys read only at start (some, like `[shutdown]`, would otherwise be said applied
    // and not be): (key, running, in the file).
    let fixed_keys: [(&str, String, String); 15] = [
        ("listen.sip", old.listen.to_string(), new.listen.to_string()),
        (
            "workers.count",
            old.workers.to_string(),
            new.workers.to_string(),
        ),
        (
            "control.socket",
            old.control_socket.display().to_string(),
            new.control_socket.display().to_string(),
        ),
        (
            "metrics.listen",
            format!("{:?}", old.metrics_listen),
            format!("{:?}", new.metrics_listen),
        ),
        (
            "steering.mode",
            format!("{:?}", old.steering),
            format!("{:?}", new.steering),
        ),
        (
            "events.file",
            format!("{:?}", old.events_file),
            format!("{:?}", new.events_file),
        ),
        (
            "events.http_post",
            format!("{:?}", old.events_http),
            format!("{:?}", new.events_http),
        ),
        ("node", old.node.clone(), new.node.clone()),
        (
            "shutdown.dialogs",
            format!("{:?}", old.shutdown_dialogs),
            format!("{:?}", new.shutdown_dialogs),
        ),
        (
            "shutdown.bye_wait_ms",
            old.shutdown_bye_wait.as_millis().to_string(),
            new.shutdown_bye_wait.as_millis().to_string(),
        ),
        (
            "steering.xdp_mode",
            format!("{:?}", old.xdp_mode),
            format!("{:?}", new.xdp_mode),
        ),
        (
            "steering.flood_rate",
            old.flood_rate.to_string(),
            new.flood_rate.to_string(),
        ),
        (
            "steering.flood_burst",
            old.flood_burst.to_string(),
            new.flood_burst.to_string(),
        ),
        (
            "steering.xdp_cpumap",
            old.xdp_cpumap.to_string(),
            new.xdp_cpumap.to_string(),
        ),
        (
            "events.queue",
            old.events_queue.to_string(),
            new.events_queue.to_string(),
        ),
    ];
    for (key, was, now) in fixed_keys {
        fixed(key, was, now)?;
    }
    // A whole section: which of its keys differs is for the operator's diff to say.
    let section = |key: &str, same: bool| -> Result<(), String> {
        if same {
            Ok(())
        } else {
            Err(format!(
                "`[{key}]` cannot change without a restart (a key in it differs from the \
                 running configuration); nothing was reloaded"
            ))
        }
    };
    section("acc", format!("{:?}", old.acc) == format!("{:?}", new.acc))?;
    fixed(
        "dialog.journal_dir",
        format!("{:?}", old.journal_dir),
        format!("{:?}", new.journal_dir),
    )?;
    section(
        "cluster",
        format!("{:?}", old.cluster) == format!("{:?}", new.cluster),
    )?;
    running
        .profiles
        .update_limits(&new.proxy.profiles)
        .map_err(|(key, e)| format!("`{key}`: {e}; nothing was reloaded"))?;
    let mut next = new.proxy.clone();
    let used = running.profiles.account_scope();
    keep_customer_slots(
        &running.routing.customers,
        used,
        &mut next.routing.customers,
    )?;
    next.profiles = running.profiles.clone();
    let slots = next.routing.customers.iter().map(|c| c.slot + 1).max();
    next.profiles.widen_accounts(slots.unwrap_or(0));
    next.branch_key = running.branch_key;
    // A gateway kept by address keeps its state (its calls under way count on, its health);
    // whether it is probed follows its set's configuration.
    let sets = next.routing.gateways.clone();
    for set in &mut next.routing.gateways.sets {
        for g in &mut set.gateways {
            let probed = sets.probed(g.target);
            if let Some(old) = running
                .routing
                .gateways
                .sets
                .iter()
                .flat_map(|s| &s.gateways)
                .find(|o| o.target == g.target)
            {
                g.state = old.state.clone();
                if g.state.health.probing() != probed {
                    g.state.health.set_probing(probed);
                    if !probed {
                        // Nothing would bring it back up.
                        g.state.health.force(crate::proxy::Admin::Active, false);
                    }
                }
            } else if let Some(state) = retired
                .iter()
                .find(|(t, _)| *t == g.target)
                .and_then(|(_, w)| w.upgrade())
            {
                // Back after a reload without it: its calls count, its health starts anew.
                state.health.force(crate::proxy::Admin::Active, probed);
                g.state = state;
            }
        }
    }
    Ok(next)
}

/// A refusal that names a whole section read only at start (`[acc]`, `[cluster]`) names the
/// keys of it that differ between the file as applied and as it is now, when the files say.
fn name_section_keys(refusal: String, applied: &toml::Table, file: &toml::Table) -> String {
    for section in ["acc", "cluster"] {
        if !refusal.starts_with(&format!("`[{section}]`")) {
            continue;
        }
        let only = |t: &toml::Table| -> toml::Table {
            t.get(section)
                .map(|v| toml::Table::from_iter([(section.to_string(), v.clone())]))
                .unwrap_or_default()
        };
        let keys = changes::keys(&only(applied), &only(file));
        if !keys.is_empty() {
            return format!(
                "`{}` cannot change without a restart; nothing was reloaded",
                keys.join("`, `")
            );
        }
    }
    refusal
}

/// Gives each customer of a reloaded file the number its accounts are counted under: that of
/// the running customer of the same name, or for a new one a number no customer had before
/// (the counts of a removed customer's live calls stay under its own until they end). `used`:
/// how many numbers were given since start.
fn keep_customer_slots(
    running: &[Customer],
    used: u16,
    next: &mut [Customer],
) -> Result<(), String> {
    let mut fresh = running.iter().map(|c| c.slot + 1).fold(used, u16::max);
    for c in next.iter_mut() {
        match running.iter().find(|r| r.name == c.name) {
            Some(r) => c.slot = r.slot,
            None if fresh < REMOVED_CUSTOMER => {
                c.slot = fresh;
                fresh += 1;
            }
            None => {
                return Err(format!(
                    "`customer`: `{}` would be the {}th customer since siplb started, more than \
                     it can count apart without a restart; nothing was reloaded",
                    c.name,
                    u32::from(fresh) + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[listen]
sip = ["127.0.0.1:5060"]

[dialog]
profiles_no_value = ["total"]
profiles_with_value = ["account"]

[[dialog.rule]]
profile = "total"

[[limits.profile]]
profile = "account"
max = 5

[[customer]]
name = "a"
sources = ["127.0.0.1/32"]

[[gateway_set]]
name = "trunk"
gateways = ["127.0.0.1:5081"]
"#;

    fn load(text: &str) -> Config {
        Config::parse(Path::new("/etc/siplb/siplb.toml"), text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The flood limit spares customers' sources, the targets of their calls from trunks
    /// (which need not be in their sources) and the gateways.
    #[test]
    fn the_guards_allow_list_holds_sources_targets_and_gateways() {
        let c = load(&BASE.replace(
            "sources = [\"127.0.0.1/32\"]",
            "sources = [\"10.1.0.0/16\"]\nnumbers = [\"1555\"]\ntargets = [\"192.0.2.7:5090\"]",
        ));
        let nets: Vec<String> = allow_list(&c.proxy).iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.1.0.0/16", "192.0.2.7/32", "127.0.0.1/32"]);
    }

    #[test]
    fn customers_gateways_rules_and_limits_change_live_and_counts_stay() {
        let old = load(BASE);
        let running = old.proxy.clone();
        let total = running.profiles.get("total").unwrap();
        let mut places = Vec::new();
        let facts = crate::dialog::CallFacts {
            dialed: b"1",
            from_user: b"u",
            from_domain: b"d",
            to_user: b"t",
            source: "127.0.0.1".parse().unwrap(),
            customer: "a",
            customer_index: 0,
            account: b"a",
        };
        running
            .profiles
            .enter(&running.rules, &facts, &mut places)
            .unwrap();
        assert_eq!(total.size(None), 1);
        let text = BASE.replace("max = 5", "max = 1").replace(
            "gateways = [\"127.0.0.1:5081\"]",
            "gateways = [\"127.0.0.1:5081\", \"127.0.0.1:5082\"]",
        ) + "\n[[customer]]\nname = \"b\"\nsources = [\"127.0.0.2/32\"]\n";
        let new = load(&text);
        let next = next_proxy(&old, &running, &Vec::new(), &new).unwrap();
        assert!(
            Arc::ptr_eq(&next.profiles, &running.profiles),
            "counts kept"
        );
        assert_eq!(total.size(None), 1);
        assert_eq!(next.routing.customers.len(), 2);
        assert_eq!(next.routing.gateways.len(), 2);
        // The lowered account limit (1) holds against the call already up.
        let mut more = Vec::new();
        assert!(next.profiles.enter(&next.rules, &facts, &mut more).is_err());
        next.profiles.leave(&mut places);
    }

    /// Customers are known by name: one removed from the front or renamed does not move the
    /// others' counts, and a new one never counts under a number an old one had.
    #[test]
    fn customers_removed_or_renamed_anywhere_keep_the_others_counts() {
        let two = BASE.replace(
            "[[gateway_set]]",
            "[[customer]]\nname = \"b\"\nsources = [\"127.0.0.2/32\"]\n\n[[gateway_set]]",
        );
        let old = load(&two);
        let running = old.proxy.clone();
        let slot = |p: &ProxyConfig, name: &str| {
            p.routing
                .customers
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.slot)
        };
        assert_eq!(
            (slot(&running, "a"), slot(&running, "b")),
            (Some(0), Some(1))
        );
        let call = |p: &ProxyConfig, name: &str, out: &mut Vec<_>| {
            let facts = crate::dialog::CallFacts {
                dialed: b"1",
                from_user: b"u",
                from_domain: b"d",
                to_user: b"t",
                source: "127.0.0.2".parse().unwrap(),
                customer: name,
                customer_index: slot(p, name).unwrap(),
                account: b"u",
            };
            p.profiles.enter(&p.rules, &facts, out)
        };
        let (mut a_calls, mut b_calls) = (Vec::new(), Vec::new());
        call(&running, "a", &mut a_calls).unwrap();
        call(&running, "b", &mut b_calls).unwrap();
        // `a` removed from the front, a new `c`, and each account allowed one call.
        let text = two.replace("max = 5", "max = 1").replace(
            "name = \"a\"\nsources = [\"127.0.0.1/32\"]",
            "name = \"c\"\nsources = [\"127.0.0.3/32\"]",
        );
        let new = load(&text);
        let next = next_proxy(&old, &running, &Vec::new(), &new).unwrap();
        assert_eq!(slot(&next, "b"), Some(1), "kept by name");
        assert_eq!(slot(&next, "c"), Some(2), "not `a`'s old number");
        assert!(
            call(&next, "b", &mut Vec::new()).is_err(),
            "b's call still counts"
        );
        let mut c_calls = Vec::new();
        call(&next, "c", &mut c_calls).expect("c's account `u` is not a's or b's");
        // Renamed back and forth: `a` comes back as a new customer after `c`'s number.
        let again = next_proxy(&new, &next, &Vec::new(), &load(&two)).unwrap();
        assert_eq!((slot(&again, "a"), slot(&again, "b")), (Some(3), Some(1)));
        for mut places in [a_calls, b_calls, c_calls] {
            running.profiles.leave(&mut places);
        }
    }

    #[test]
    fn a_gateway_kept_across_a_reload_keeps_its_calls() {
        let old = load(BASE);
        let running = old.proxy.clone();
        let g = &running.routing.gateways.sets[0].gateways[0];
        g.state.take(None);
        let new = load(BASE);
        let next = next_proxy(&old, &running, &Vec::new(), &new).unwrap();
        let kept = &next.routing.gateways.sets[0].gateways[0];
        assert!(std::sync::Arc::ptr_eq(&kept.state, &g.state));
    }

    #[test]
    fn a_gateway_removed_and_added_back_while_its_calls_are_up_counts_them() {
        let with_two = BASE.replace(
            "gateways = [\"127.0.0.1:5081\"]",
            "gateways = [\"127.0.0.1:5081\", \"127.0.0.1:5082\"]",
        );
        let old = load(&with_two);
        let running = old.proxy.clone();
        let second = running.routing.gateways.sets[0].gateways[1].clone();
        // A call up on it (what its dialog holds), then a reload without it.
        let call = second.state.clone();
        assert!(call.take(Some(1)));
        let without = load(BASE);
        let next = next_proxy(&old, &running, &Vec::new(), &without).unwrap();
        let retired = retire(&running, &Vec::new(), &next);
        assert_eq!(retired.len(), 1);
        drop(running);
        drop(second);
        // Added back: the call still counts against `max_calls`.
        let back = load(&with_two);
        let again = next_proxy(&without, &next, &retired, &back).unwrap();
        let g = &again.routing.gateways.sets[0].gateways[1];
        assert!(Arc::ptr_eq(&g.state, &call));
        assert!(!g.state.has_room(Some(1)));
        // Once its calls have ended, nothing is kept for it.
        drop((old, again));
        call.give_back();
        drop(call);
        assert!(retire(&next, &retired, &next).is_empty());
    }

    #[test]
    fn a_kept_gateway_keeps_its_health_and_is_probed_as_its_set_now_says() {
        let old = load(BASE);
        let running = old.proxy.clone();
        let g = &running.routing.gateways.sets[0].gateways[0];
        g.state.health.force(crate::proxy::Admin::Inactive, false);
        let probed = BASE.replace(
            "name = \"trunk\"\n",
            "name = \"trunk\"\nprobe_interval_ms = 1000\n",
        );
        let next = next_proxy(&old, &running, &Vec::new(), &load(&probed)).unwrap();
        let kept = &next.routing.gateways.sets[0].gateways[0].state.health;
        assert_eq!(kept.flag_text(), "IP", "still down, probed now");
        // Probing turned off: nothing would bring it back, so it is active again.
        let again = next_proxy(&load(&probed), &next, &Vec::new(), &load(BASE)).unwrap();
        let kept = &again.routing.gateways.sets[0].gateways[0].state.health;
        assert_eq!(kept.flag_text(), "AX");
    }

    #[test]
    fn a_refused_section_is_named_by_the_keys_that_differ() {
        let t = |s: &str| -> toml::Table { s.parse().unwrap() };
        let applied = t("[acc]\ndir = \"/var/lib/siplb\"\ncdrs = true\n");
        let file = t("[acc]\ndir = \"/var/lib/siplb\"\ncdrs = false\nqueue = 9\n");
        let refusal = "`[acc]` cannot change without a restart (…)".to_string();
        assert_eq!(
            name_section_keys(refusal, &applied, &file),
            "`acc.cdrs`, `acc.queue` cannot change without a restart; nothing was reloaded"
        );
        let other = "`listen.sip` cannot change".to_string();
        assert_eq!(name_section_keys(other.clone(), &applied, &file), other);
    }

    #[test]
    fn what_cannot_change_live_is_refused_naming_the_key() {
        let old = load(BASE);
        let running = old.proxy.clone();
        for (from, to, key) in [
            ("127.0.0.1:5060", "127.0.0.1:5061", "listen.sip"),
            (
                "profiles_no_value = [\"total\"]",
                "profiles_no_value = [\"total\", \"other\"]",
                "dialog.profiles_no_value",
            ),
            (
                "profiles_with_value = [\"account\"]",
                "profiles_with_value = [\"account\", \"dest\"]",
                "dialog.profiles_with_value",
            ),
            ("[listen]", "[acc]\ncdrs = true\n[listen]", "[acc]"),
            (
                "[listen]",
                "[shutdown]\ndialogs = \"bye\"\n[listen]",
                "shutdown.dialogs",
            ),
            (
                "[listen]",
                "[steering]\nflood_rate = 10\n[listen]",
                "steering.flood_rate",
            ),
        ] {
            let new = load(&BASE.replace(from, to));
            let e = next_proxy(&old, &running, &Vec::new(), &new).unwrap_err();
            assert!(e.starts_with(&format!("`{key}`")), "{key}: {e}");
            // The key, not the running configuration's insides.
            assert!(e.len() < 200 && !e.contains("Some("), "{e}");
        }
    }
}

//! `cargo xtask load-vs-sipp`: what a call costs the load side, sipp (`examples/sipp/`, a UAC
//! and two UAS processes) against the project's load generator (`xtask load`), driving the
//! same siplb (`examples/siplb.toml` on AF_XDP) at the same rates, taking turns, in the
//! head-to-head's network namespaces.
//!
//! On veth the receiving side's work runs in the sender's system call: every datagram the
//! load side sends would charge it with siplb's XDP program and its AF_XDP copy. siplb's
//! veth end therefore polls in a kernel thread of its own (threaded NAPI), so that sipp and
//! the generator are each charged with their own work only, the same way.

use crate::h2h::{
    GEN_IP, H2h, NS_GEN, NS_PROXY, PROXY_IP, median_by, prepare, us_per_call, write_docs_block,
};
use crate::procfs::clk_tck;
use crate::{output, root, run};
use anyhow::{Context, Result, bail};
use siplb_tests::{read_sipp_csv, stop_child};
use std::path::Path;
use std::process::Command;

/// `cargo xtask load-vs-sipp` options.
#[derive(clap::Args)]
pub struct Args {
    /// Offered rates, calls per second, comma-separated
    #[arg(long, default_value = "1000,2000", value_delimiter = ',')]
    rates: Vec<u32>,
    /// Seconds of calls per run (1..60)
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds (1..9); each figure is the median round
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Also put the table into docs/BENCHMARKS.md (between its `load-vs-sipp` markers)
    #[arg(long)]
    write_docs: bool,
}

const BEGIN: &str =
    "<!-- load-vs-sipp: begin (written by cargo xtask load-vs-sipp --write-docs) -->";
const END: &str = "<!-- load-vs-sipp: end -->";

/// One run of one load side.
#[derive(Debug, Clone, Copy)]
struct Side {
    ok: u64,
    cpu_s: f64,
}

impl Side {
    fn us_per_call(&self) -> f64 {
        us_per_call(self.cpu_s, self.ok)
    }
}

pub fn load_vs_sipp(a: Args) -> Result<()> {
    if a.rates.is_empty() || a.rates.iter().any(|r| *r == 0 || *r > 20_000) {
        bail!("--rates: each 1..20000");
    }
    let seconds = a.seconds.clamp(1, 60);
    let repeat = a.repeat.clamp(1, 9);
    let root = root();
    let (work, _ns) = prepare(
        &root,
        &["sip-tester", "procps", "ethtool", "iproute2"],
        "target/load-vs-sipp-runs",
    )?;
    let h = H2h {
        root: root.clone(),
        work: work.clone(),
        seconds,
        perf: false,
    };
    // [rate index] = rounds, for sipp and for the generator.
    let mut sipp = vec![Vec::new(); a.rates.len()];
    let mut generator = vec![Vec::new(); a.rates.len()];
    for round in 0..repeat {
        for (ri, &rate) in a.rates.iter().enumerate() {
            for side in ["sipp", "generator"] {
                let dir = work.join(format!("{side}-{rate}-{}", round + 1));
                std::fs::create_dir_all(&dir)?;
                let mut siplb = h.start("siplb-xdp", &dir)?;
                let r = threaded_napi().and_then(|()| {
                    let calls = u64::from(rate) * u64::from(seconds);
                    if side == "sipp" {
                        drive_sipp(&root, &dir, rate, calls, seconds)
                    } else {
                        drive_generator(&root, &dir, rate, calls, seconds)
                    }
                });
                stop_child(&mut siplb);
                let r = r?;
                eprintln!(
                    "round {} {side} at {rate}/s: {} ok, {:.1} µs CPU per call",
                    round + 1,
                    r.ok,
                    r.us_per_call()
                );
                if side == "sipp" {
                    sipp[ri].push(r);
                } else {
                    generator[ri].push(r);
                }
            }
        }
    }
    let commit =
        output(
            Command::new("git")
                .current_dir(&root)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    let mut md = format!(
        "Load side CPU per call (µs, median of {repeat} rounds of {seconds} s), commit `{}`, \
         through siplb on AF_XDP:\n\n\
         | rate (calls/s) | sipp: calls, µs per call | generator: calls, µs per call | generator's calls/s per core over sipp's |\n\
         |---|---|---|---|\n",
        commit.trim()
    );
    for (ri, rate) in a.rates.iter().enumerate() {
        let median = |rounds: &[Side]| median_by(rounds, Side::us_per_call);
        let (s, g) = (median(&sipp[ri]), median(&generator[ri]));
        md.push_str(&format!(
            "| {rate} | {}, {:.1} | {}, {:.1} | {:.1}× |\n",
            s.ok,
            s.us_per_call(),
            g.ok,
            g.us_per_call(),
            s.us_per_call() / g.us_per_call()
        ));
    }
    println!("{md}");
    if a.write_docs {
        write_docs_block(&root, BEGIN, END, "The load generator against sipp", &md)?;
        println!("written: docs/BENCHMARKS.md");
    }
    Ok(())
}

/// siplb's end of the veth pair polls in a kernel thread (it has a NAPI context once siplb's
/// XDP program is attached).
fn threaded_napi() -> Result<()> {
    run(Command::new("ip").args([
        "netns",
        "exec",
        NS_PROXY,
        "sh",
        "-c",
        "echo 1 > /sys/class/net/h2hp/threaded",
    ]))
}

/// sipp's two gateways and its caller, in one shell whose children's CPU (`cutime`,
/// `cstime` once each is reaped) is what the three cost.
fn drive_sipp(root: &Path, dir: &Path, rate: u32, calls: u64, seconds: u32) -> Result<Side> {
    let s = root.join("examples/sipp");
    let base = "-bind_local -nostdin -buff_size 1048576";
    let timeout = u64::from(seconds) + 40;
    let script = format!(
        "cd {dir} || exit 1; \
         sipp -sf {s}/uas.xml -i {GEN_IP} -p 5081 -aa {base} -timeout {t2}s > uas1.out 2>&1 & a=$!; \
         sipp -sf {s}/uas.xml -i {GEN_IP} -p 5082 -aa {base} -timeout {t2}s > uas2.out 2>&1 & b=$!; \
         sleep 1; \
         sipp {PROXY_IP}:5060 -sf {s}/uac.xml -inf {s}/accounts.csv -i {GEN_IP} -p 5070 {base} \
           -r {rate} -rp 1000 -m {calls} -l 100000 -timeout {timeout}s -trace_stat -stf uac.csv \
           > uac.out 2>&1; \
         kill $a $b; wait $a $b; cat /proc/$$/stat",
        dir = dir.display(),
        s = s.display(),
        t2 = timeout + 10,
    );
    let out = Command::new("ip")
        .args(["netns", "exec", NS_GEN, "sh", "-c", &script])
        .output()
        .context("sipp")?;
    let stat = String::from_utf8_lossy(&out.stdout);
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        bail!("sipp's shell printed no /proc stat (see {})", dir.display());
    };
    let f: Vec<u64> = rest
        .split(' ')
        .map(|v| v.trim().parse().unwrap_or(0))
        .collect();
    // After the command name: cutime and cstime are the 14th and 15th fields.
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    Ok(Side {
        ok: read_sipp_csv(&dir.join("uac.csv")).get("SuccessfulCall(C)"),
        cpu_s: ticks as f64 / clk_tck(),
    })
}

/// The generator, with its default tick for the rate; its own CPU as it reports it.
fn drive_generator(root: &Path, dir: &Path, rate: u32, calls: u64, seconds: u32) -> Result<Side> {
    let out = Command::new("ip")
        .args(["netns", "exec", NS_GEN])
        .arg(root.join("target/release/xtask"))
        .arg("load")
        .args(["--target", &format!("{PROXY_IP}:5060")])
        .args(["--caller", &format!("{GEN_IP}:5070")])
        .args(["--gateway", &format!("{GEN_IP}:5081")])
        .args(["--gateway", &format!("{GEN_IP}:5082")])
        .arg("--accounts")
        .arg(root.join("examples/sipp/accounts.csv"))
        .args(["--rate", &rate.to_string()])
        .args(["--calls", &calls.to_string()])
        .args(["--max-s", &(u64::from(seconds) + 40).to_string()])
        .output()
        .context("the load generator")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(dir.join("load.txt"), &text)?;
    let after = |name: &str| -> Option<f64> {
        text.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)?
            .parse()
            .ok()
    };
    let (Some(ok), Some(cpu_s)) = (after("ok"), after("CPU")) else {
        bail!("the generator printed no summary (see {})", dir.display());
    };
    Ok(Side {
        ok: ok as u64,
        cpu_s,
    })
}

//! Project tasks: `cargo xtask ci` (install what the tests need, run them all),
//! `cargo xtask bench` (sipp through siplb and through Kamailio, same scenario and rate),
//! `cargo xtask load` (the project's own load generator against a running siplb) and
//! `cargo xtask build-ebpf` (the BPF object, from `ebpf/`, with Debian's Rust); `cargo xtask`
//! alone lists them all.

mod bench;
mod ci;
mod ebpf;
mod h2h;
mod load;
mod load_vs_sipp;
mod outcome;
mod procfs;
mod rounds;
mod xdp;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "siplb's project tasks",
    arg_required_else_help = true,
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the test dependencies (apt) and the BPF toolchain, check the BPF object,
    /// formatting and lints, run every test
    Ci,
    /// Install the test dependencies only (sipp, iproute2, procps, ethtool)
    InstallDeps,
    /// Install the BPF toolchain (Debian's Rust and LLVM 22, bpf-linker)
    InstallBpfToolchain,
    /// Build the BPF object proxy/bpf/siplb.bpf.o and its record from ebpf/
    BuildEbpf {
        /// Rebuild and compare with the committed object instead of writing it
        #[arg(long)]
        check: bool,
    },
    /// sipp through siplb and Kamailio at one fixed rate; proxy CPU per call
    Bench(bench::BenchArgs),
    /// The XDP guard's drop rate for a junk flood (network namespaces, needs root)
    BenchXdp,
    /// The load generator against the null relay, Kamailio, siplb on io_uring and on AF_XDP,
    /// taking turns in network namespaces joined by veth: CPU per call, maxima, a chart
    HeadToHead(h2h::H2hArgs),
    /// The load generator against sipp: CPU per call of each load side, same siplb, same
    /// rates, in the head-to-head's network namespaces
    LoadVsSipp(load_vs_sipp::Args),
    /// siplb's own load generator (caller and gateways in one process) against a running siplb
    Load(load::LoadArgs),
    /// A null UDP relay (no SIP work) from LISTEN to GATEWAY for at most SECS seconds: the
    /// socket path's limit (used by bench --relay)
    Relay {
        /// Where callers send, ip:port
        listen: std::net::SocketAddr,
        /// The one gateway, ip:port
        gateway: std::net::SocketAddr,
        /// How long at most, in seconds
        secs: u64,
    },
    /// Send 64-byte junk datagrams to DST for SECS seconds, print how many (used by bench-xdp)
    FloodSend {
        /// Destination, ip:port
        dst: std::net::SocketAddr,
        /// How long, in seconds
        secs: f64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci => ci::ci(),
        Task::InstallDeps => ci::install_deps(ci::TEST_PACKAGES),
        Task::InstallBpfToolchain => ebpf::install_bpf_toolchain(),
        Task::BuildEbpf { check } => ebpf::build_ebpf(check),
        Task::Bench(args) => bench::bench(args),
        Task::BenchXdp => xdp::bench_xdp(),
        Task::HeadToHead(args) => h2h::head_to_head(args),
        Task::LoadVsSipp(args) => load_vs_sipp::load_vs_sipp(args),
        Task::Load(args) => load::load(args),
        Task::FloodSend { dst, secs } => xdp::flood_send(dst, secs),
        Task::Relay {
            listen,
            gateway,
            secs,
        } => Ok(siplb_tests::load::relay::relay(
            listen,
            gateway,
            std::time::Duration::from_secs(secs),
            &std::sync::atomic::AtomicBool::new(false),
        )?),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the repository")
        .into()
}

/// The release build of siplb that the benchmarks run.
fn build_release_siplb(root: &Path) -> Result<()> {
    run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "siplb",
    ]))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The trimmed standard output of a command (empty when it cannot run).
fn output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

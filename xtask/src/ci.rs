//! Installing what the tests need, and running them all (`cargo xtask ci`).

use crate::{ebpf, root, run};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

/// Installs Debian packages that are not installed yet (`apt-get update` first).
pub fn install_deps(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    // The packages' services are not started (Debian's policy-rc.d, for the install only): a
    // system Kamailio on *:5060, PostgreSQL or Redis would hold the ports the tests use; the
    // tests start servers of their own.
    let policy = std::path::Path::new(POLICY_RC_D);
    let ours = !policy.exists() && {
        let written = write_policy(policy).is_ok();
        if !written {
            // Half made (not executable): not left behind.
            let _ = std::fs::remove_file(policy);
        }
        written
    };
    let installed = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    installed
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// A policy-rc.d that forbids starting services (exit 101: "action forbidden").
fn write_policy(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\nexit 101\n")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Debian packages the tests need: sipp, `ip` and `ss` (network namespaces), `ps`, `ethtool`
/// (checksum offload on veth for the cpumap test), `capsh` (siplb without BPF capabilities),
/// `script` (siplb's log on a terminal), `postgresql` (the accounting sink's tests start
/// a server of their own), `openssl` (their certificates for TLS), `redis-server` (so do the
/// fleet-limit tests) and `kamailio` (a real peer on either side of siplb).
pub const TEST_PACKAGES: &[&str] = &[
    "sip-tester",
    "iproute2",
    "procps",
    "ethtool",
    "libcap2-bin",
    "bsdutils",
    "postgresql",
    "openssl",
    "redis-server",
    "kamailio",
];

pub fn ci() -> Result<()> {
    install_deps(TEST_PACKAGES)?;
    ebpf::install_bpf_toolchain()?;
    ebpf::build_ebpf(true)?;
    let root = root();
    if Command::new("cargo")
        .args(["fmt", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]))?;
    }
    if Command::new("cargo")
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(Command::new("cargo").current_dir(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // Every test binary's output passes through; their "test result" lines are added up into
    // one closing line, so a reader of the log sees the whole suite's count last.
    let mut child = Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--workspace", "--locked", "--color", "never"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cargo test")?;
    let out = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in …"
            for part in rest
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .split(';')
            {
                let mut w = part.split_whitespace();
                let (Some(n), Some(what)) = (w.next(), w.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("\nsiplb: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    Ok(())
}

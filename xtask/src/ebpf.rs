//! The BPF object (`proxy/bpf/siplb.bpf.o`), built from `ebpf/` with Debian's Rust, and the
//! record of what it was built from.

use crate::ci::install_deps;
use crate::{output, root, run};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages of the BPF build (docs/ARCHITECTURE.md, "The BPF object"): Rust 1.96 on LLVM 22 with a prebuilt `core`
/// for bpfel, and LLVM 22 for bpf-linker.
const BPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
];
const BPF_LINKER: &str = "bpf-linker@0.13.0";
const LLVM: &str = "/usr/lib/llvm-22";
/// Where the object and its record are committed.
const BPF_OBJECT: &str = "proxy/bpf/siplb.bpf.o";
const BPF_RECORD: &str = "proxy/bpf/BUILD.md";

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

pub fn install_bpf_toolchain() -> Result<()> {
    install_deps(BPF_PACKAGES)?;
    let linker = cargo_home().join("bin/bpf-linker");
    if !linker.exists() {
        // Both variables: without LLVM_PREFIX the build script takes the first llvm-config on
        // PATH (LLVM 14) and fails to link.
        run(Command::new("cargo")
            .args(["install", BPF_LINKER, "--locked", "--no-default-features"])
            .args(["--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM)
            .env("LLVM_SYS_221_PREFIX", LLVM))?;
    }
    Ok(())
}

fn package_version(p: &str) -> String {
    output(Command::new("dpkg-query").args(["-W", "-f=${Version}", p]))
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("sha256sum")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The sources the object is built from, each with its hash.
fn bpf_sources(root: &Path) -> Result<Vec<(String, String)>> {
    let mut files = vec![
        "ebpf/Cargo.toml".to_string(),
        "ebpf/Cargo.lock".to_string(),
        "common/Cargo.toml".to_string(),
        "common/src/lib.rs".to_string(),
    ];
    for e in std::fs::read_dir(root.join("ebpf/src"))? {
        files.push(format!("ebpf/src/{}", e?.file_name().to_string_lossy()));
    }
    files.sort();
    files
        .into_iter()
        .map(|f| Ok((sha256(&root.join(&f))?, f)))
        .collect()
}

/// The record of what the committed object was built from (everything that decides its bytes).
fn bpf_record(root: &Path, object: &Path) -> Result<String> {
    let mut r = String::from(
        "# proxy/bpf/siplb.bpf.o\n\n\
         Built by `cargo xtask build-ebpf` from `ebpf/` and `common/`, copied to\n\
         /tmp/siplb-bpf-build (release, bpfel-unknown-none, BTF kept, debug info stripped, paths\n\
         remapped to /siplb and /cargo). CI rebuilds it with `cargo xtask build-ebpf --check`:\n\
         with these package versions the bytes must match.\n\n",
    );
    r += &format!("object sha256: {}\n\n", sha256(object)?);
    r += "toolchain:\n";
    for p in BPF_PACKAGES {
        r += &format!("- {p} {}\n", package_version(p));
    }
    r += &format!(
        "- {}\n",
        output(Command::new(cargo_home().join("bin/bpf-linker")).arg("--version"))
    );
    r += "\nsources (sha256):\n";
    for (h, f) in bpf_sources(root)? {
        r += &format!("- {h}  {f}\n");
    }
    Ok(r)
}

/// Where the BPF crate is built: always the same folder, because the symbol names of a Rust
/// object carry a hash of each crate's path, and the object must not depend on where the
/// repository is checked out.
const BPF_BUILD_DIR: &str = "/tmp/siplb-bpf-build";

/// Copies the BPF crate and `common/` to [`BPF_BUILD_DIR`] and builds the object into `out`.
fn build_bpf_object(root: &Path, out: &Path) -> Result<()> {
    let dir = Path::new(BPF_BUILD_DIR);
    for sub in ["ebpf/src", "common/src"] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
        std::fs::create_dir_all(dir.join(sub))?;
        for e in std::fs::read_dir(root.join(sub))? {
            let e = e?;
            std::fs::copy(e.path(), dir.join(sub).join(e.file_name()))?;
        }
    }
    for f in ["ebpf/Cargo.toml", "ebpf/Cargo.lock"] {
        std::fs::copy(root.join(f), dir.join(f))?;
    }
    // common/ inherits its package fields from the main workspace, which is not copied.
    std::fs::write(
        dir.join("common/Cargo.toml"),
        "[package]\nname = \"siplb-common\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         license = \"Apache-2.0\"\npublish = false\n",
    )?;
    let path = format!(
        "{}:{}",
        cargo_home().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let flags = format!(
        "-C debuginfo=2 -C link-arg=--btf --remap-path-prefix={BPF_BUILD_DIR}=/siplb --remap-path-prefix={}=/cargo",
        cargo_home().display()
    );
    run(Command::new("/usr/bin/cargo")
        .current_dir(dir.join("ebpf"))
        .args([
            "build",
            "--locked",
            "--release",
            "--target",
            "bpfel-unknown-none",
        ])
        .env("PATH", path)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", flags)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR"))?;
    run(Command::new(format!("{LLVM}/bin/llvm-strip"))
        .arg("-g")
        .arg(dir.join("ebpf/target/bpfel-unknown-none/release/siplb"))
        .arg("-o")
        .arg(out))
}

/// Builds the object and its record (or, with `check`, rebuilds and compares with the
/// committed ones: a mismatch is an error when the recorded toolchain is the installed one,
/// and a warning when Debian has moved on).
pub fn build_ebpf(check: bool) -> Result<()> {
    let root = root();
    let object = root.join(BPF_OBJECT);
    if !check {
        build_bpf_object(&root, &object)?;
        std::fs::write(root.join(BPF_RECORD), bpf_record(&root, &object)?)?;
        eprintln!("xtask: wrote {BPF_OBJECT} and {BPF_RECORD}");
        return Ok(());
    }
    let fresh = Path::new(BPF_BUILD_DIR).join("siplb.bpf.o");
    build_bpf_object(&root, &fresh)?;
    let recorded = std::fs::read_to_string(root.join(BPF_RECORD))?;
    let now = bpf_record(&root, &fresh)?;
    let toolchain = |r: &str| -> String {
        r.lines()
            .skip_while(|l| *l != "toolchain:")
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let same_bytes = std::fs::read(&fresh)? == std::fs::read(&object)?;
    if same_bytes && now == recorded {
        eprintln!("xtask: {BPF_OBJECT} rebuilt from source: identical");
        return Ok(());
    }
    if toolchain(&now) == toolchain(&recorded) {
        bail!(
            "{BPF_OBJECT} does not match its sources (run `cargo xtask build-ebpf` and commit):\n\
             --- recorded\n{recorded}\n--- now\n{now}"
        );
    }
    eprintln!(
        "xtask: WARNING: the BPF toolchain differs from the recorded one; {BPF_OBJECT} {} its \
         rebuild. The tests run with the committed object.\n--- recorded\n{recorded}\n--- now\n{now}",
        if same_bytes {
            "still equals"
        } else {
            "differs from"
        }
    );
    Ok(())
}

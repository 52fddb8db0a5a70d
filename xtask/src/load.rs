//! `cargo xtask load`: siplb's own load generator (`siplb_tests::load`) against a running
//! siplb: caller and gateways in this process, the call flow of `examples/sipp/`.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// siplb's address
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// The caller's address
    #[arg(long, default_value = "127.0.0.1:5070")]
    caller: SocketAddr,
    /// The gateways' addresses (siplb's gateway set), repeatable
    #[arg(long = "gateway", default_values = ["127.0.0.1:5081", "127.0.0.1:5082"])]
    gateways: Vec<SocketAddr>,
    /// `account;number;` lines, taken in turn
    #[arg(long, default_value = "examples/sipp/accounts.csv")]
    accounts: PathBuf,
    /// Calls per second (1..200000)
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Calls (1..10000000)
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Hold time of each call, ms
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// The run ends by then, seconds (1..3600)
    #[arg(long, default_value_t = 120)]
    max_s: u64,
    /// Wake-up period in µs, taking every datagram waiting (0: at each arrival); default
    /// from 500 calls/s up the time eight calls take to start, within 1000..4000, else 0
    #[arg(long)]
    tick_us: Option<u64>,
    /// Each call's outcome and response times, as CSV
    #[arg(long)]
    csv: Option<PathBuf>,
}

pub fn load(a: LoadArgs) -> Result<()> {
    if a.rate == 0 || a.rate > 200_000 || a.calls == 0 || a.calls > 10_000_000 {
        bail!("--rate 1..200000, --calls 1..10000000");
    }
    if a.max_s == 0 || a.max_s > 3600 {
        bail!("--max-s 1..3600");
    }
    let accounts_path = crate::root().join(&a.accounts);
    let accounts = siplb_tests::load::read_accounts(&accounts_path)
        .with_context(|| accounts_path.display().to_string())?;
    let load = siplb_tests::load::Load {
        target: a.target,
        caller: a.caller,
        gateways: a.gateways,
        accounts,
        rate: a.rate,
        calls: a.calls,
        hold: Duration::from_millis(a.hold_ms),
        max: Duration::from_secs(a.max_s),
        tick: a.tick_us.map_or_else(
            || siplb_tests::load::Load::default_tick(a.rate),
            Duration::from_micros,
        ),
    };
    let report = siplb_tests::load::run(&load).context("load")?;
    println!("{}", report.summary());
    if let Some(path) = a.csv {
        report
            .write_csv(&path)
            .with_context(|| path.display().to_string())?;
    }
    if report.ok < a.calls {
        bail!(
            "{} of {} calls did not complete",
            a.calls - report.ok,
            a.calls
        );
    }
    Ok(())
}

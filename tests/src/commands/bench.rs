//! `hop-lab bench [--bytes N] [--runs N] [--quick] [--dir DIR]`: measure aws-hop against
//! OpenSSH `ssh -N -L` through the same bastion, in one run, and print a table with
//! PASS/MISS per target (the measuring code is in the binary's `bench` module).
//!
//! Without `--dir` it brings up a lab of its own (`LabConfig::unique`, guarded like the
//! tests' labs) and tears it down at the end. The report goes to stdout, progress to
//! stderr. The exit status is 0 when every measure ran, whatever PASS/MISS says; it is
//! 1 when a step failed.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::bench::{self, Settings};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Bytes per bulk transfer: a number with an optional K, M or G suffix (binary: KiB,
    /// MiB, GiB). Default 1G, or 64M with --quick.
    #[arg(long, value_parser = parse_size)]
    bytes: Option<u64>,
    /// Bulk transfers per tool and direction (median of these). Default 5, or 3 with
    /// --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// A smoke test: 64 MiB x 3 runs and fewer latency samples.
    #[arg(long)]
    quick: bool,
    /// Use the lab whose state is in DIR (left up) instead of bringing one up.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let (bytes, runs, start_samples, connect_samples) = if args.quick {
        (64 << 20, 3, 5, 9)
    } else {
        (1 << 30, 5, 11, 21)
    };
    let settings = Settings {
        bytes: args.bytes.unwrap_or(bytes),
        runs: args.runs.unwrap_or(runs),
        start_samples,
        connect_samples,
        dir: args.dir,
    };
    if settings.bytes == 0 || settings.runs == 0 {
        bail!("--bytes and --runs must be at least 1");
    }
    bench::run(&settings)
}

/// `1073741824`, `1G`, `1GiB`, `64M`, `512k`: a byte count.
fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("unknown unit {unit:?} (use K, M or G)")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("not a byte count: {text:?}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("too large: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("3 parsecs").is_err());
    }
}

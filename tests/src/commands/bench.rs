//! `hop-lab bench [--bytes N] [--runs N] [--quick] [--only eice|ssm] [--dir DIR]`: measure
//! aws-hop against OpenSSH `ssh -N -L` through the same bastion, and aws-hop through the
//! lab's EC2 Instance Connect Endpoint and its fake SSM Session Manager against both, in
//! one run, and print a table with PASS/MISS per target (the measuring code is in the
//! binary's `bench` module).
//!
//! Without `--dir` it brings up a lab of its own (`LabConfig::unique`, guarded like the
//! tests' labs) and tears it down at the end. The report goes to stdout, progress to
//! stderr. The exit status is 0 when every measure ran, whatever PASS/MISS says; it is
//! 1 when a step failed.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::bench::{self, EiceSettings, Section, Settings, SsmSettings};

/// A section that can run alone.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Only {
    /// The EICE section: start to first byte, throughput and setup breakdown through
    /// `eic_endpoint("web-1").ssh(USER)` against the bastion path.
    Eice,
    /// The SSM section: start to first byte, new connections and throughput (upload with
    /// chunk_size 8192 and 32768) through `ssm("web-1")` forwards against the bastion
    /// path, with CPU-s per GiB of the client and of the lab's Python agent and gateway.
    Ssm,
}

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
    /// Run one section only. `eice`: its transfers use --bytes (default 256M, 64M with
    /// --quick) and --runs (default 3). `ssm`: --bytes (default 128M, 32M with --quick)
    /// and --runs (default 3).
    #[arg(long, value_enum)]
    only: Option<Only>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let (bytes, runs, start_samples, connect_samples) = if args.quick {
        (64 << 20, 3, 5, 9)
    } else {
        (1 << 30, 5, 11, 21)
    };
    let only_eice = args.only == Some(Only::Eice);
    let only_ssm = args.only == Some(Only::Ssm);
    // The EICE section's transfers go through the lab's Python relay: 256 MiB x 3 by
    // default, or what --bytes and --runs say when it runs alone.
    let eice_bytes = if args.quick { 64 << 20 } else { 256 << 20 };
    let eice = EiceSettings {
        bytes: if only_eice {
            args.bytes.unwrap_or(eice_bytes)
        } else {
            eice_bytes
        },
        runs: if only_eice { args.runs.unwrap_or(3) } else { 3 },
        start_samples,
        connect_samples,
    };
    // The SSM section's transfers go through the lab's Python gateway and agent (the
    // agent sends 1 KiB messages): 128 MiB x 3 by default.
    let ssm_bytes = if args.quick { 32 << 20 } else { 128 << 20 };
    let ssm = SsmSettings {
        bytes: if only_ssm {
            args.bytes.unwrap_or(ssm_bytes)
        } else {
            ssm_bytes
        },
        runs: if only_ssm { args.runs.unwrap_or(3) } else { 3 },
        start_samples,
        connect_samples,
    };
    let settings = Settings {
        bytes: args.bytes.unwrap_or(bytes),
        runs: args.runs.unwrap_or(runs),
        start_samples,
        connect_samples,
        dir: args.dir,
        only: args.only.map(|only| match only {
            Only::Eice => Section::Eice,
            Only::Ssm => Section::Ssm,
        }),
        eice,
        ssm,
    };
    if [settings.bytes, settings.eice.bytes, settings.ssm.bytes].contains(&0)
        || [settings.runs, settings.eice.runs, settings.ssm.runs].contains(&0)
    {
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

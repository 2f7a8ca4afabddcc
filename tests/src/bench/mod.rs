//! `hop-lab bench`: aws-hop against OpenSSH `ssh -N -L` through the same bastion of the
//! same lab, in one run, with PASS/MISS against the targets of the performance issue.
//!
//! [`run`] prints each section on stdout as it completes (plain aligned text, to paste
//! into an issue note as it is) and progress on stderr:
//! 1. a header: CPU, `nproc`, kernel, `ssh -V`, load average, the exact command lines;
//! 2. process start to the first byte of the MariaDB greeting ([`first_byte`]);
//! 3. a new connection through an open forward to that first byte;
//! 4. bulk throughput each way, with CPU-s per GiB ([`throughput`]);
//! 5. peak RSS with 100 forwards and 1000 connections ([`rss`]);
//! 6. the EICE section ([`eice`]): aws-hop through the lab's EC2 Instance Connect Endpoint
//!    against the bastion path, start to first byte, throughput and a setup breakdown
//!    (`--only eice` runs this section alone);
//! 7. the SSM section ([`ssm`]): aws-hop through the lab's fake Session Manager against the
//!    bastion path, start to first byte, new connections, throughput with CPU per GiB
//!    (`--only ssm` runs this section alone);
//! 8. the summary of every target, and the load average at the end.
//!
//! Layout, one concept per file: [`tools`] (the compared tools and how they start),
//! [`server`] (the test servers in the private subnet), [`procfs`] (CPU, memory, limits),
//! [`stats`], [`table`], [`verdict`]. Shared with `hop-lab demo`: [`binary`] (finding the
//! aws-hop binary), [`child`] (a child process with captured output) and [`interrupt`]
//! (Ctrl-C stops the children; the lab guard tears down the lab).

pub(crate) mod binary;
pub(crate) mod child;
mod eice;
mod first_byte;
pub(crate) mod interrupt;
mod procfs;
mod rss;
mod server;
mod ssm;
mod stats;
mod table;
mod throughput;
mod tools;
mod verdict;

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Deref;
use std::path::PathBuf;
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aws_hop_lab::{Lab, OwnedLab, ServeMode};

use self::procfs::{command_text, cpu_model, loadavg, nofile, set_nofile_soft, status_kib};
use self::server::Server;
use self::table::Table;
use self::tools::{Forward, Launcher, Tool, Tunnel};

/// What to measure, from the command line.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Bytes per bulk transfer.
    pub(crate) bytes: u64,
    /// Bulk transfers per tool and direction.
    pub(crate) runs: usize,
    /// Samples of process start to first byte, per tool.
    pub(crate) start_samples: usize,
    /// Samples of new connection to first byte, per tool.
    pub(crate) connect_samples: usize,
    /// Reuse the lab in this state directory instead of bringing one up.
    pub(crate) dir: Option<PathBuf>,
    /// Run only this section.
    pub(crate) only: Option<Section>,
    /// What the EICE section measures.
    pub(crate) eice: eice::EiceSettings,
    /// What the SSM section measures.
    pub(crate) ssm: ssm::SsmSettings,
}

pub(crate) use eice::EiceSettings;
pub(crate) use ssm::SsmSettings;

/// A section that can run alone (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Eice,
    Ssm,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Eice => "eice",
            Section::Ssm => "ssm",
        }
    }
}

/// The issue's bound on a new connection's first byte through an open forward.
const NEW_CONNECTION_MS: f64 = 2.0;

/// `1 GiB`, `64 MiB`, `1000 B`: a byte count for the report.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(size, _)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes} B"),
            |(size, unit)| format!("{} {unit}", bytes / size),
        )
}

/// The lab the bench runs in: one it brought up (torn down at the end, and by the guard
/// if hop-lab dies first), or an existing one (left as it is).
enum BenchLab {
    Owned(OwnedLab),
    Existing(Lab),
}

impl Deref for BenchLab {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        match self {
            BenchLab::Owned(lab) => lab,
            BenchLab::Existing(lab) => lab,
        }
    }
}

impl BenchLab {
    fn open(dir: Option<&PathBuf>) -> Result<BenchLab> {
        if let Some(dir) = dir {
            let lab = Lab::from_dir(&std::path::absolute(dir)?)?;
            let down: Vec<&str> = lab
                .daemon_pids()
                .into_iter()
                .filter(|(name, pid)| matches!(*name, "bastion" | "mariadb") && pid.is_none())
                .map(|(name, _)| name)
                .collect();
            if !down.is_empty() {
                bail!(
                    "the lab in {} is not up ({} not running): run `hop-lab up` or leave out --dir",
                    dir.display(),
                    down.join(", ")
                );
            }
            return Ok(BenchLab::Existing(lab));
        }
        let hop_lab = std::env::current_exe().context("cannot find the hop-lab executable")?;
        Ok(BenchLab::Owned(OwnedLab::start(&hop_lab)?))
    }

    fn origin(&self) -> &'static str {
        match self {
            BenchLab::Owned(_) => "brought up for this run, torn down at the end",
            BenchLab::Existing(_) => "an existing lab (--dir), left up",
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            BenchLab::Owned(lab) => lab.down(),
            BenchLab::Existing(_) => Ok(()),
        }
    }
}

/// Prints a section on stdout at once.
fn section(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Runs the whole bench; see the module docs.
pub(crate) fn run(settings: &Settings) -> Result<()> {
    let began = Instant::now();
    let load_start = loadavg();
    // The lab's daemons, the servers and the bench's own 1000 sockets inherit or need a
    // high open-file limit; aws-hop in the memory measure gets the user's own.
    let (user_nofile, hard_nofile) = nofile()?;
    let bench_nofile = hard_nofile.min(user_nofile.max(65_536));
    set_nofile_soft(bench_nofile)?;

    let aws_hop = binary::aws_hop()?;
    eprintln!("bench: aws-hop binary {}", aws_hop.display());
    let lab = BenchLab::open(settings.dir.as_ref())?;
    // The EICE and SSM sections need the AWS side (moto and the fakes); idempotent.
    eprintln!("bench: bringing up the lab's AWS side");
    let aws = lab.up_aws();
    // Only now: the lab's daemons and its guard must start with Ctrl-C unblocked (see
    // `interrupt`).
    interrupt::install()?;
    let result = aws.and_then(|()| {
        if let Some(only) = settings.only {
            measure_only(only, settings, &lab, aws_hop, &load_start)
        } else {
            measure_all(
                settings,
                &lab,
                aws_hop,
                &load_start,
                user_nofile,
                bench_nofile,
            )
        }
    });
    let down = lab.finish();
    result?;
    down?;
    section(&format!(
        "load average at end: {}   (at start: {load_start}); the bench took {:.0} s",
        loadavg(),
        began.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn measure_all(
    settings: &Settings,
    lab: &BenchLab,
    aws_hop: PathBuf,
    load_start: &str,
    user_nofile: u64,
    bench_nofile: u64,
) -> Result<()> {
    let sink = Server::start(lab, ServeMode::Sink)?;
    let source = Server::start(lab, ServeMode::Source)?;
    let echo = Server::start(lab, ServeMode::Echo)?;
    let mariadb = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    let launcher = Launcher::new(lab, aws_hop.clone())?;

    // The long-lived tunnels' forwards, in the order of tools::{SINK, SOURCE, MARIADB}.
    let main_forwards: Vec<(Tool, Vec<Forward>)> = Tool::ALL
        .into_iter()
        .map(|tool| {
            let forwards = [
                sink.addr.to_string(),
                source.addr.to_string(),
                mariadb.clone(),
            ]
            .into_iter()
            .map(|target| Forward {
                port: launcher.port(),
                target,
            })
            .collect();
            (tool, forwards)
        })
        .collect();

    section(&header(
        settings,
        lab,
        &aws_hop,
        &launcher,
        &main_forwards,
        load_start,
        user_nofile,
    )?);
    let mut verdicts = Vec::new();

    let starts = first_byte::measure_starts(&launcher, &mariadb, settings.start_samples)?;
    section(&starts.report());
    verdicts.push(first_byte::start_verdict(&starts));

    // The long-lived tunnels, for new connections and bulk transfers.
    let mut tunnels: Vec<Tunnel> = Vec::new();
    for (tool, forwards) in &main_forwards {
        eprintln!("bench: opening {}", tool.label());
        tunnels.push(launcher.open(*tool, forwards)?);
    }

    let connects = first_byte::measure_new_connections(&tunnels, settings.connect_samples)?;
    section(&connects.report());
    verdicts.push(first_byte::new_connection_verdict(
        &connects,
        NEW_CONNECTION_MS,
    ));

    let throughput = throughput::measure(lab, &mut tunnels, settings.bytes, settings.runs)?;
    section(&throughput.report());
    verdicts.extend(throughput.verdicts());

    let aws_after_bulk = status_kib(tunnels[0].pid(), "VmHWM")?;
    for tunnel in tunnels {
        let tool = tunnel.tool;
        let process = tunnel.close()?;
        if tool == Tool::AwsHop {
            for line in process.lines_containing("STATS ") {
                eprintln!("bench: bulk-transfer aws-hop: {line}");
            }
        }
    }

    eprintln!("bench: memory measure");
    let memory = rss::measure(&launcher, &echo, user_nofile, bench_nofile)?;
    section(&format!(
        "{}  (for comparison: VmHWM of the bulk-transfer aws-hop above: {:.1} MB)\n",
        memory.report(),
        aws_after_bulk as f64 * 1024.0 / 1e6
    ));
    verdicts.extend(memory.verdicts());

    eprintln!("bench: EICE section");
    let (text, eice_verdicts) = eice::measure(lab, &launcher, &settings.eice)?;
    section(&text);
    verdicts.extend(eice_verdicts);

    eprintln!("bench: SSM section");
    let (text, ssm_verdicts) = ssm::measure(lab, &launcher, &settings.ssm)?;
    section(&text);
    verdicts.extend(ssm_verdicts);

    section(&format!("Summary\n{}", verdict::summary(&verdicts)));
    drop((sink, source, echo));
    Ok(())
}

/// `--only eice` or `--only ssm`: a short header, then that section.
fn measure_only(
    only: Section,
    settings: &Settings,
    lab: &BenchLab,
    aws_hop: PathBuf,
    load_start: &str,
) -> Result<()> {
    let launcher = Launcher::new(lab, aws_hop.clone())?;
    let mut facts = machine_facts(&aws_hop);
    let mut fact = |k: &str, v: String| facts.row(vec![k.into(), v]);
    fact(
        "lab",
        format!(
            "{} in {}: {}",
            lab.config.prefix,
            lab.dir().display(),
            lab.origin()
        ),
    );
    fact("load average", format!("{load_start} at start"));
    let (bytes, runs, starts, connects) = match only {
        Section::Eice => (
            settings.eice.bytes,
            settings.eice.runs,
            settings.eice.start_samples,
            settings.eice.connect_samples,
        ),
        Section::Ssm => (
            settings.ssm.bytes,
            settings.ssm.runs,
            settings.ssm.start_samples,
            settings.ssm.connect_samples,
        ),
    };
    fact(
        "sizes",
        format!(
            "{} x {runs} runs per path and direction; {starts} starts, {connects} new \
             connections per path",
            human_size(bytes),
        ),
    );
    let rendered = facts.render();
    section(&format!(
        "hop-lab bench --only {}\n{}",
        only.name(),
        rendered.split_once('\n').map_or("", |(_, rest)| rest)
    ));
    let (text, _) = match only {
        Section::Eice => eice::measure(lab, &launcher, &settings.eice)?,
        Section::Ssm => ssm::measure(lab, &launcher, &settings.ssm)?,
    };
    section(&text);
    Ok(())
}

/// The facts table's first rows: date, CPU, cores, kernel, OpenSSH and the aws-hop binary.
fn machine_facts(aws_hop: &std::path::Path) -> Table {
    let nproc = thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut facts = Table::new(&["", ""]).left(1);
    let mut fact = |k: &str, v: String| facts.row(vec![k.into(), v]);
    fact("date", command_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]));
    fact("cpu", cpu_model());
    fact("nproc", nproc.to_string());
    fact("kernel", command_text("uname", &["-r"]));
    fact("ssh -V", command_text("ssh", &["-V"]));
    let build = if binary::release_build() {
        "release"
    } else {
        "debug"
    };
    fact(
        "aws-hop",
        format!("{} ({build} build of hop-lab)", aws_hop.display()),
    );
    facts
}

fn header(
    settings: &Settings,
    lab: &BenchLab,
    aws_hop: &std::path::Path,
    launcher: &Launcher,
    main_forwards: &[(Tool, Vec<Forward>)],
    load_start: &str,
    user_nofile: u64,
) -> Result<String> {
    let mut text = String::from(
        "hop-lab bench: aws-hop vs OpenSSH `ssh -N -L`, same lab, same bastion, one run\n",
    );
    let mut facts = machine_facts(aws_hop);
    let mut fact = |k: &str, v: String| facts.row(vec![k.into(), v]);
    fact(
        "lab",
        format!(
            "{} in {}: bastion {}@{}:{}, {}",
            lab.config.prefix,
            lab.dir().display(),
            lab.user,
            lab.bastion_ip,
            lab.ssh_port,
            lab.origin()
        ),
    );
    fact("load average", format!("{load_start} at start"));
    fact(
        "open files",
        format!(
            "ulimit -n {user_nofile} at start: the memory measure's aws-hop runs with it; \
             the other tools and the servers inherit the bench's raised {}",
            nofile()?.0
        ),
    );
    fact(
        "sizes",
        format!(
            "{} x {} runs per tool and direction; latency: {} starts, {} new connections per tool",
            human_size(settings.bytes),
            settings.runs,
            settings.start_samples,
            settings.connect_samples
        ),
    );
    // The header table has an empty header row: skip it.
    let rendered = facts.render();
    text.push_str(rendered.split_once('\n').map_or("", |(_, rest)| rest));
    text.push_str("\nCommand lines (forwards: sink, source, MariaDB; ports fixed per tool):\n");
    for (tool, forwards) in main_forwards {
        let line = launcher.describe(*tool, forwards)?;
        let _ = writeln!(text, "  [{}]", tool.label());
        for l in line.lines() {
            let _ = writeln!(text, "    {l}");
        }
    }
    let _ = write!(
        text,
        "  Start to first byte: the same commands with one forward (a fresh free port) to {}:{}.\n  \
         Memory: the aws-hop script with {} x `forward(0, ECHO, b)`.\n",
        lab.mariadb_host,
        lab.mariadb_port,
        rss::FORWARDS
    );
    Ok(text)
}

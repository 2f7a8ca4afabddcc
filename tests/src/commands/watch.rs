//! `hop-lab watch --pid PID --dir DIR`: the guard that tears down the lab in DIR once
//! process PID exits.
//!
//! The fixture starts it in its own process group, with stdio on
//! `<DIR>.watch.log`; it also tries `setsid` so that a closing terminal does not reach
//! it (that fails harmlessly when it already leads its process group). After a clean
//! teardown it removes its log.

use std::path::PathBuf;

use anyhow::Result;
use aws_hop_lab::fixture::guard_log_path;
use aws_hop_lab::watch;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The process that owns the lab.
    #[arg(long)]
    pid: u32,
    /// The lab's state directory (holds lab.env).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let _ = nix::unistd::setsid();
    let dir = std::path::absolute(&args.dir)?;
    watch::watch(args.pid, &dir)?;
    let _ = std::fs::remove_file(guard_log_path(&dir));
    Ok(())
}

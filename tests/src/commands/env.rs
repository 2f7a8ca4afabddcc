//! `hop-lab env`: print the lab's KEY=VALUE lines (computed, nothing is touched).

use std::io::Write;

use anyhow::Result;
use aws_hop_lab::{Lab, LabConfig};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> Result<()> {
    let lab = Lab::new(LabConfig::default())?;
    std::io::stdout().write_all(lab.env_lines().as_bytes())?;
    Ok(())
}

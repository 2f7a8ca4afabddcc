//! `hop-lab up`: bring the lab up and print its KEY=VALUE lines on stdout.

use std::io::Write;

use anyhow::Result;
use aws_hop_lab::{Lab, LabConfig};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> Result<()> {
    let lab = Lab::new(LabConfig::default())?;
    lab.up().map_err(|e| {
        e.context(format!(
            "the partial lab is left for inspection in {}; `hop-lab down` removes it",
            lab.dir().display()
        ))
    })?;
    std::io::stdout().write_all(lab.env_lines().as_bytes())?;
    Ok(())
}

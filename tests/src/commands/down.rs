//! `hop-lab down [--dir DIR]`: tear down the default lab, or the lab whose state (its
//! `lab.env`) is in DIR.

use std::path::PathBuf;

use anyhow::Result;
use aws_hop_lab::lab::ENV_FILE;
use aws_hop_lab::{Lab, LabConfig};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The lab's state directory (default: the lab of LabConfig::default()).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let lab = match args.dir {
        Some(dir) => {
            let dir = std::path::absolute(&dir)?;
            if !dir.join(ENV_FILE).exists() && !dir.exists() {
                eprintln!("hop-lab: no lab in {} (nothing to do)", dir.display());
                return Ok(());
            }
            Lab::from_dir(&dir)?
        }
        None => Lab::new(LabConfig::default())?,
    };
    lab.down()
}

//! `hop-lab serve MODE ADDR`: a test server (see `aws_hop_lab::serve`). Prints
//! `listening on ADDR` once bound, then serves until killed.

use std::net::SocketAddr;

use anyhow::Result;
use aws_hop_lab::ServeMode;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// echo, sink, source or greet.
    #[arg(value_enum)]
    mode: ServeMode,
    /// Address to listen on, e.g. 10.231.1.30:9000 or 127.0.0.1:0.
    addr: SocketAddr,
}

pub(crate) fn run(args: Args) -> Result<()> {
    aws_hop_lab::serve::run(args.mode, args.addr)?;
    Ok(())
}

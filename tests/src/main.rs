//! `hop-lab`: bring the aws-hop lab up and down, print its settings, guard it, run the
//! test servers, show aws-hop at work (`demo`) and measure it against OpenSSH (`bench`).
//! See `commands` for the subcommands; `bench` holds the measuring code and the process
//! helpers that `demo` shares.

mod bench;
mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    commands::run()
}

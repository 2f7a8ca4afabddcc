//! `hop-lab`: bring the aws-hop lab up and down, print its settings, guard it, and run
//! the test servers. See `commands` for the subcommands.

mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    commands::run()
}

//! The `hop-lab` command line: one module per subcommand, each with its clap `Args` and
//! a `run(args) -> Result<()>`.
//!
//! - `up`: bring the lab up (idempotent) and print its KEY=VALUE lines;
//! - `down`: tear it down (`--dir DIR`: the lab whose state is in DIR);
//! - `env`: print the KEY=VALUE lines without touching anything;
//! - `watch`: the guard that tears a lab down when a process exits;
//! - `serve`: a test server (echo, sink, source, greet);
//! - `demo`: aws-hop reaching the lab's private databases, start to finish, in a lab of
//!   its own;
//! - `bench`: aws-hop against OpenSSH `ssh -N -L` on the same lab path, with PASS/MISS
//!   per target.
//!
//! `up`, `down` and `env` use `LabConfig::default()`: the built-in `vpclab` lab unless
//! LAB_PREFIX, LAB_NET, LAB_DIR or LAB_USER say otherwise. Progress goes to stderr;
//! stdout carries only KEY=VALUE lines (or the server's `listening on` line), except for
//! `demo` and `bench`, whose stdout is their report.

mod bench;
mod demo;
mod down;
mod env;
mod serve;
mod up;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "hop-lab",
    about = "The aws-hop lab: a VPC of network namespaces with real sshd and databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Bring the lab up (idempotent) and print its KEY=VALUE lines.
    Up(up::Args),
    /// Tear the lab down: stop its daemons, delete its namespaces, user and state.
    Down(down::Args),
    /// Print the lab's KEY=VALUE lines.
    Env(env::Args),
    /// Tear down the lab in DIR once process PID exits (used by the test fixture).
    Watch(watch::Args),
    /// Run a test server on ADDR (run it in a namespace with `ip netns exec`).
    Serve(serve::Args),
    /// Show aws-hop reaching private databases through a bastion, in a lab of its own.
    Demo(demo::Args),
    /// Measure aws-hop against OpenSSH `ssh -N -L` through the same bastion.
    Bench(bench::Args),
}

/// Parses the command line, runs the subcommand, maps an error to exit code 1.
pub(crate) fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Up(args) => up::run(args),
        Commands::Down(args) => down::run(args),
        Commands::Env(args) => env::run(args),
        Commands::Watch(args) => watch::run(args),
        Commands::Serve(args) => serve::run(args),
        Commands::Demo(args) => demo::run(args),
        Commands::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hop-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

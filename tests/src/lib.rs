//! The aws-hop lab: a one-machine model of an AWS VPC for aws-hop's end-to-end tests.
//!
//! A lab is two network namespaces joined to the root namespace (the "laptop") by veth
//! pairs: a public subnet with a real OpenSSH bastion, and a private subnet with real
//! MariaDB, PostgreSQL and a private-instance sshd. The private addresses are reachable
//! only through the bastion, and the `*.<prefix>.internal` names resolve only inside the
//! namespaces, as an RDS endpoint resolves only inside its VPC. This crate is a Rust port
//! of `shared/lab/vpc-lab.sh`; its README explains the topology and the gotchas the code
//! refers to by number ("gotcha 10").
//!
//! # Layout
//!
//! - [`lab`]: the lab itself. [`LabConfig`] names a lab (prefix, address range, state
//!   directory, login user); [`Lab`] knows every address, name, port and file of one lab
//!   and brings it up ([`Lab::up`], idempotent) and down ([`Lab::down`]). Namespace
//!   helpers run commands or open sockets inside the lab's namespaces.
//! - [`serve`]: the test servers of `hop-lab serve` (echo, sink, source, greet) and the
//!   client side of their protocols.
//! - [`pattern`]: the deterministic byte pattern that `source` sends and tests verify.
//! - [`watch`]: the guard that tears a lab down when the process that owns it exits.
//! - [`fixture`]: what the integration tests use: one shared lab per test process
//!   ([`Lab::shared`]), the fluent runner for the real `aws-hop` binary ([`HopCmd`]),
//!   a throw-away `HOME` ([`TestHome`]), real database clients and OpenSSH tunnels.
//!
//! Everything needs root (network namespaces, tmpfs, `useradd`) and the packages that
//! `tests/setup.sh` installs.
//!
//! # Example
//!
//! ```no_run
//! use aws_hop_lab::{Lab, LabConfig};
//!
//! let lab = Lab::new(LabConfig::default())?;
//! lab.up()?;
//! for (key, value) in lab.env() {
//!     println!("{key}={value}");
//! }
//! lab.down()?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Errors are `anyhow::Error`: this crate is test glue, and every error is read by a
//! person, so each one names the command that failed and the log file to read.

pub mod fixture;
pub mod lab;
pub mod pattern;
pub mod serve;
pub mod watch;

pub use fixture::{HopCmd, HopOutput, HopProcess, OwnedLab, SshTunnel, TestHome, TestServer};
pub use lab::{Lab, LabConfig};
pub use serve::ServeMode;

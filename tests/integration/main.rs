//! End-to-end tests: the lab itself, OpenSSH as the baseline aws-hop is compared with,
//! the `hop-lab serve` test servers, and (later) aws-hop against all of them.
//!
//! Every test that needs the lab calls [`lab()`]: one lab per test process, brought up
//! on first use and torn down by a guard after the process exits. These tests need root
//! and the packages from `tests/setup.sh`.
//!
//! # Layout
//!
//! - `lab_isolation`: the private subnet is unreachable from the laptop, its names do
//!   not resolve there, and the bastion reaches it.
//! - `openssh_baseline`: real `ssh -N -L` tunnels with real `psql`/`mariadb` queries,
//!   ProxyJump to the instance, strict host keys, and the bastion listener that refuses
//!   forwarding.
//! - `serve_modes`: echo, sink, source and greet, on loopback and across the lab.
//! - `demo`: `hop-lab demo`, the README's first command, ends with `demo OK`.
//! - `fixture_selftest`: the `HopCmd` runner against a fake aws-hop (no lab needed).
//! - `lab_lifecycle`: `up` is idempotent and restarts only dead daemons, the bastion can
//!   be stopped and started, `down` and the watch guard leave nothing behind.
//! - `hop_forward`, `hop_multi`, `hop_bulk`: aws-hop forwards with real clients, multi-hop,
//!   1 GiB each way and 200 concurrent connections, byte-checked.
//! - `hop_host_keys`: unknown, accept-new and changed host keys.
//! - `hop_eice`: EC2 Instance Connect Endpoint hops against the lab's AWS side: lookup,
//!   discovery, ephemeral key push, SSH and a PostgreSQL forward over the tunnel, errors.
//! - `hop_auth`: ssh-agent, and passphrase-protected keys through it.
//! - `hop_bad_input`: every user error gives its cause and fix, and nothing else breaks.
//! - `hop_proxy`: `aws-hop proxy` under real `scp`/`ssh` (ProxyCommand), `aws-hop ssh-config`,
//!   and `connect()` with its ordered fallback and report.
//! - `hop_repl`: the REPL driven through tmux.
//! - `hop_secrets`: an EICE login, an SSM forward, shell and SIGTERM at `RUST_LOG=trace`:
//!   no secret key, token, signature or private key in the output.
//! - `hop_ssm`: SSM Session Manager hops: a PostgreSQL forward, ten connections over one
//!   session, 100 MB each way through faults, a resumed WebSocket, SSH with a pushed key,
//!   and the errors (offline agent, unknown instance, refused token, IAM, idle timeout).
//! - `aws_lab`: the lab's AWS side (moto and the fakes) through boto3, websockets and
//!   OpenSSH: discovery, SigV4 refusals, SendSSHPublicKey with a real login, EICE tunnels.
//! - `ssm_lab`: the lab's fake SSM Session Manager through an independent Python client:
//!   smux and basic port sessions, a pty shell, resume after 1000 Bye, faults, API errors.

mod aws_lab;
mod demo;
mod fixture_selftest;
mod hop_auth;
mod hop_bad_input;
mod hop_bulk;
mod hop_common;
mod hop_eice;
mod hop_forward;
mod hop_host_keys;
mod hop_multi;
mod hop_proxy;
mod hop_repl;
mod hop_secrets;
mod hop_ssm;
mod lab_isolation;
mod lab_lifecycle;
mod openssh_baseline;
mod serve_modes;
mod ssm_lab;

use std::path::Path;

use aws_hop_lab::Lab;

/// The `hop-lab` binary cargo built for these tests.
fn hop_lab_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hop-lab"))
}

/// The lab of this test process.
fn lab() -> &'static Lab {
    Lab::shared(hop_lab_bin())
}

//! aws-hop: a scriptable shell for reaching private AWS resources.
//!
//! One binary holds an `aws-hop>` REPL and a script runner. Both embed [Rhai](https://rhai.rs),
//! whose native bindings open *hops* (SSH bastions and EC2 Instance Connect today; SSM later)
//! and *forwards* (local listeners whose every connection goes through a hop).
//!
//! # Layout
//!
//! Data flows one way: script or REPL line → binding → hop → forward. No layer reaches back up.
//!
//! - [`cli`]: the command line (`aws-hop`, `run`, `check`, `-e`, `proxy`, `ssh-config`) and
//!   [`run`], the whole program.
//! - [`proxy`]: `aws-hop proxy` (OpenSSH's ProxyCommand) and `aws-hop ssh-config`.
//! - [`repl`]: the rustyline editor, its helper (completion, multi-line validation, hints) and
//!   the `.help`-style meta-commands.
//! - [`script`]: the Rhai engine (limits, plugin module resolver, error rendering with
//!   file:line:col) and `script::bindings`, one `register(engine)` per binding area.
//! - [`hop`]: transports. A [`hop::Hop`] opens a byte stream to `host:port` through itself:
//!   `direct` TCP, an SSH session (`hop::ssh`) that may itself run over another hop's stream,
//!   or an EC2 Instance Connect Endpoint tunnel (`aws::eice`).
//! - [`aws`]: SDK configuration (profile, region, credentials), instance lookup, the EICE hop
//!   (endpoint discovery, key push), and the wire protocols under it: the presigned EICE URL
//!   and its WebSocket stream.
//! - [`forward`]: local listeners, the per-connection pump, the registry of live forwards.
//! - [`strategy`]: strategy plugins (`plugins/*.rhai`): loading, the contract check, and the
//!   ordered attempts behind `connect()` and `aws-hop proxy`.
//! - [`known_hosts`], [`ssh_config`], [`keys`]: OpenSSH's files and keys, read as OpenSSH does
//!   (`openssh_match`: the host-pattern rules both files share).
//! - [`runtime`]: the one tokio runtime, and cancellation (Ctrl-C) shared by every blocking wait.
//! - [`events`]: messages from background tasks (a forward lost its bastion, ...) to the user.
//!
//! Errors: the library's own enum is [`Error`] (thiserror); `anyhow` is used only in [`cli`].

pub mod aws;
pub mod cli;
pub mod error;
pub mod events;
pub mod forward;
pub mod hop;
pub mod keys;
pub mod known_hosts;
mod openssh_match;
pub mod proxy;
pub mod repl;
pub mod runtime;
pub mod script;
pub mod ssh_config;
pub mod strategy;

pub use cli::run;
pub use error::{Error, Result};

//! aws-hop: a scriptable shell for reaching private AWS resources.
//!
//! One binary holds an `aws-hop>` REPL and a script runner. Both embed [Rhai](https://rhai.rs),
//! whose native bindings open *hops* (SSH bastions, EC2 Instance Connect Endpoint tunnels, SSM
//! Session Manager sessions) and *forwards* (local listeners whose every connection goes
//! through a hop).
//!
//! # Layers
//!
//! Data flows one way, down this list; no module imports one above it (there are no import
//! cycles: `book/src/architecture.md` has the graph).
//!
//! 1. Fronts. [`cli`]: the command line (`aws-hop`, `run`, `check`, `-e`, `proxy`,
//!    `ssh-config`) and [`run`], the whole program; [`repl`]: the rustyline editor, its helper
//!    (completion, multi-line validation, hints) and the `.help`-style meta-commands;
//!    [`proxy`]: `aws-hop proxy` (OpenSSH's ProxyCommand) and `aws-hop ssh-config`;
//!    [`logging`]: stderr logs with the dependency cap that keeps secrets out.
//! 2. [`script`]: the Rhai engine (limits, plugin module resolver) and `script::bindings`,
//!    one `register(engine)` per area: thin conversions between Rhai values and the library.
//! 3. [`strategy`]: strategy plugins (`plugins/*.rhai`; the
//!    built-in strategies: `eice`, `ssm`, `bastion`, `direct`): loading, the contract check,
//!    the ordered attempts behind `connect()` and `aws-hop proxy`, and the options they accept.
//! 4. [`login`]: from a destination and SSH options to an SSH hop: `~/.ssh/config` merged,
//!    ProxyJump chains, and logins over a tunnel with an ephemeral key pushed before each dial.
//! 5. [`aws`]: what talks to AWS APIs (SDK configuration, instance lookup, endpoint discovery,
//!    key pushes, the SSM session API); it builds the tunnel transports of `hop`.
//! 6. [`forward`]: local listeners, the per-connection pump, the registry of live forwards.
//! 7. [`hop`]: transports. A [`hop::Hop`] opens a byte stream to `host:port` through itself:
//!    `direct` TCP, an SSH session (`hop::ssh`) that may run over another hop's stream, an EC2
//!    Instance Connect Endpoint tunnel (`hop::eice`), SSM Session Manager (`hop::ssm`). What a
//!    transport needs from AWS comes in through `hop::tunnel`'s traits.
//! 8. Foundations, used from any layer: [`known_hosts`], [`ssh_config`], [`keys`] (OpenSSH's
//!    files and keys, read as OpenSSH does; `openssh_match`: the host-pattern rules both files
//!    share), [`tls`] (the rustls provider and client configuration), [`runtime`] (the one
//!    tokio runtime, Ctrl-C, SIGHUP and SIGTERM), [`events`] (messages from background tasks
//!    to the user: the one channel through which transports report), [`diagnostic`] (errors
//!    with file:line:col), [`suggest`] ("did you mean"), and [`error`].
//!
//! Errors: the library's own enum is [`Error`] (thiserror); `anyhow` is used only in [`cli`].

pub mod aws;
pub mod cli;
pub mod diagnostic;
pub mod error;
pub mod events;
pub mod forward;
pub mod hop;
pub mod keys;
pub mod known_hosts;
pub mod logging;
pub mod login;
mod openssh_match;
pub mod proxy;
pub mod repl;
pub mod runtime;
pub mod script;
pub mod ssh_config;
pub mod strategy;
pub mod suggest;
pub mod tls;

pub use cli::run;
pub use error::{Error, Result};

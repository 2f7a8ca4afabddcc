//! Host-key verification for every SSH connection aws-hop makes.
//!
//! [`HostKeyCheck::verify`] applies the policy to the result of the known_hosts lookup:
//!
//! | known_hosts says | strict (scripts' default) | accept-new | ask (the REPL) |
//! |---|---|---|---|
//! | trusted | connect | connect | connect |
//! | unknown | refuse, say how to accept | record, connect | ask as OpenSSH does |
//! | changed | refuse, loudly | refuse | refuse |
//! | revoked | refuse | refuse | refuse |
//!
//! [`Client`] is the russh handler: it runs the check, keeps the refusal so the caller can
//! report it (russh itself only says "unknown key"), and reports a lost connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use russh::client::{DisconnectReason, Handler};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::PublicKey;

use crate::error::{Error, Result};
use crate::events;
use crate::known_hosts::{self, HostKeyStatus, KnownHosts};

/// What to do with a host key that known_hosts does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse (scripts' default).
    Strict,
    /// Record it and connect (`known_hosts: "accept-new"`).
    AcceptNew,
    /// Ask on the terminal (the REPL's default), as OpenSSH does.
    Ask,
}

/// The verification to run for one server.
#[derive(Clone)]
pub struct HostKeyCheck {
    /// Where keys are looked up and recorded.
    pub known_hosts: KnownHosts,
    /// What to do with an unknown key.
    pub policy: HostKeyPolicy,
    /// The name looked up in known_hosts (HostName, or HostKeyAlias).
    pub name: String,
    /// The port (non-22 ports are looked up as `[name]:port`). 22 for a HostKeyAlias, which
    /// OpenSSH looks up as written.
    pub port: u16,
}

impl HostKeyCheck {
    /// The name as known_hosts shows it.
    fn shown(&self) -> String {
        known_hosts::lookup_name(&self.name, self.port)
    }

    /// Accepts `key`, or says why not. May record the key (accept-new, or yes at the prompt).
    pub fn verify(&self, key: &PublicKey) -> Result<()> {
        let fingerprint = known_hosts::fingerprint(key);
        let algorithm = key.algorithm().to_string();
        match self.known_hosts.check(&self.name, self.port, key)? {
            HostKeyStatus::Trusted { .. } => Ok(()),
            HostKeyStatus::Changed(changed) => Err(Error::HostKeyChanged(Box::new(changed))),
            HostKeyStatus::Revoked { file, line } => Err(Error::HostKeyRevoked {
                host: self.shown(),
                fingerprint,
                file,
                line,
            }),
            HostKeyStatus::Unknown => {
                let record_in = self
                    .known_hosts
                    .user_files()
                    .first()
                    .map_or_else(|| "~/.ssh/known_hosts".into(), |p| p.display().to_string());
                let accept = match self.policy {
                    HostKeyPolicy::Strict => false,
                    HostKeyPolicy::AcceptNew => true,
                    HostKeyPolicy::Ask => ask(&self.shown(), &algorithm, &fingerprint)?,
                };
                if !accept {
                    return Err(if self.policy == HostKeyPolicy::Ask {
                        Error::HostKeyDeclined {
                            host: self.shown(),
                            fingerprint,
                        }
                    } else {
                        Error::HostKeyUnknown {
                            host: self.shown(),
                            name: self.name.clone(),
                            port: self.port,
                            algorithm,
                            fingerprint,
                            record_in,
                        }
                    });
                }
                let path = self.known_hosts.learn(&self.name, self.port, key)?;
                events::emit(format!(
                    "recorded host key for {} ({algorithm} {fingerprint}) in {}",
                    self.shown(),
                    path.display()
                ));
                Ok(())
            }
        }
    }
}

/// Asks on the terminal, as OpenSSH does; true for "yes".
fn ask(host: &str, algorithm: &str, fingerprint: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "The authenticity of host '{host}' can't be established.\n{algorithm} key fingerprint is {fingerprint}."
    );
    loop {
        let _ = write!(
            err,
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        );
        let _ = err.flush();
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("reading the answer", e))?;
        let answer = line.trim();
        if n == 0 || answer.eq_ignore_ascii_case("no") {
            return Ok(false);
        }
        if answer.eq_ignore_ascii_case("yes") || answer == fingerprint {
            return Ok(true);
        }
        let _ = writeln!(err, "Please type 'yes', 'no' or the fingerprint: ");
    }
}

/// The russh client handler of one SSH connection.
pub(crate) struct Client {
    pub(crate) check: HostKeyCheck,
    /// Why the host key was refused; read by the dialer after russh returns `UnknownKey`.
    pub(crate) refusal: Arc<Mutex<Option<Error>>>,
    /// Set by the owner before a deliberate close, so that no "connection lost" is reported.
    pub(crate) closing: Arc<AtomicBool>,
    /// Set once the handshake is done: only established sessions report losses.
    pub(crate) established: Arc<AtomicBool>,
    /// The hop's name for messages.
    pub(crate) label: String,
}

impl Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let check = self.check.clone();
                let key = key.clone();
                // May prompt on the terminal or touch files: not on an I/O thread.
                tokio::task::spawn_blocking(move || check.verify(&key))
                    .await
                    .unwrap_or_else(|e| Err(Error::invalid(format!("host key check failed: {e}"))))
            }
            PublicKeyOrCertificate::Certificate(_) => Err(Error::invalid(format!(
                "{} presented a host certificate; aws-hop checks plain host keys only so far",
                self.check.shown()
            ))),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refusal.lock().expect("refusal lock") = Some(e);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let lost = self.established.load(Ordering::SeqCst) && !self.closing.load(Ordering::SeqCst);
        let why = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!("the server disconnected: {}", info.message)
            }
            DisconnectReason::Error(e) => e.to_string(),
        };
        if lost {
            events::emit(format!(
                "{}: connection lost ({why}); the next connection through it will re-dial",
                self.label
            ));
        }
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

//! SSH to the instance of a tunnel hop (EICE or SSM): `eic_endpoint("web-1").ssh("ec2-user")`.
//!
//! `dest` is the login user (`"ec2-user"`), or `user@host` where host names that instance.
//! The host key is looked up under the instance id (like OpenSSH's `HostKeyAlias`), so a
//! private IP reused by another instance cannot confuse it. Without a `key` option, an
//! ephemeral ed25519 key is made in memory (it never touches disk) and pushed with the hop's
//! [`KeyPush`] (SendSSHPublicKey) before every dial, because a pushed key is accepted for 60 s.

use std::sync::Arc;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::Algorithm;

use super::chain::resolve;
use super::options::ssh_options;
use super::{Env, SshRequest};
use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::hop::eice::EiceHop;
use crate::hop::ssh::SshHop;
use crate::hop::ssm::SsmHop;
use crate::hop::tunnel::{Instance, KeyPush};

/// A tunnel hop to log in over, and what the login needs to know of it.
pub struct Tunnel {
    /// The hop the SSH connection runs over.
    via: Hop,
    /// The host dialed through `via`: the private IP (EICE) or the instance id (SSM).
    dial_host: String,
    instance: Instance,
    keys: Arc<dyn KeyPush>,
    /// The tunnel hop, for messages.
    describe: String,
    /// "an EICE hop", for messages.
    kind: &'static str,
    /// True when a host names the instance.
    is_instance: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl Tunnel {
    /// SSH over EICE: one tunnel per SSH connection, to the instance's private IP.
    pub fn eice(eice: Arc<EiceHop>) -> Tunnel {
        let ip = eice.ip();
        let checker = eice.clone();
        Tunnel {
            via: Hop::Eice(eice.clone()),
            dial_host: if ip.is_ipv6() {
                format!("[{ip}]")
            } else {
                ip.to_string()
            },
            instance: eice.instance().clone(),
            keys: eice.key_push(),
            describe: eice.describe(),
            kind: "an EICE hop",
            is_instance: Box::new(move |h| checker.is_instance(h)),
        }
    }

    /// SSH over SSM: one `AWS-StartSSHSession` session per SSH connection.
    pub fn ssm(ssm: Arc<SsmHop>) -> Tunnel {
        let checker = ssm.clone();
        Tunnel {
            via: Hop::Ssm(Arc::new(ssm.ssh_transport())),
            dial_host: ssm.instance().id.clone(),
            instance: ssm.instance().clone(),
            keys: ssm.key_push(),
            describe: ssm.describe(),
            kind: "an SSM hop",
            is_instance: Box::new(move |h| checker.is_instance(h)),
        }
    }
}

/// Logs in to the tunnel's instance as `dest` (see the module docs).
pub async fn login(env: &Env<'_>, tunnel: Tunnel, dest: &str, req: &SshRequest) -> Result<Hop> {
    let (user, host) = match dest.rsplit_once('@') {
        Some((u, h)) => (u, Some(h)),
        None => (dest, None),
    };
    if let Some(h) = host
        && !(tunnel.is_instance)(h)
    {
        return Err(Error::invalid(format!(
            "{} reaches only its instance, not {h}: write .ssh(\"{user}\") to log in to {}, then \
             .ssh(\"{user}@{h}\") on that hop to go further",
            tunnel.describe,
            tunnel.instance.label()
        )));
    }
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "'{dest}' is not a user name: {} takes the login user, for example \
             .ssh(\"ec2-user\") (ubuntu, admin ... depend on the AMI)",
            tunnel.kind
        )));
    }
    let resolved = resolve(env, &format!("{user}@{}", tunnel.dial_host)).await?;
    let mut o = ssh_options(env, &resolved, req, Some(tunnel.via.clone()))?;
    o.host_key.name.clone_from(&tunnel.instance.id);
    o.host_key.port = 22;
    if req.key.is_none() {
        let key = ephemeral_key()?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::invalid(format!("cannot encode the ephemeral key: {e}")))?;
        let user = o.user.clone();
        let keys = tunnel.keys.clone();
        o.memory_keys.insert(0, Arc::new(key));
        o.before_dial = Some(Arc::new(move || {
            let (keys, user, public) = (keys.clone(), user.clone(), public.clone());
            Box::pin(async move { keys.push(&user, &public).await })
        }));
    }
    let hop = Hop::Ssh(SshHop::connect(o).await?);
    (env.track)(&hop);
    Ok(hop)
}

/// A new ed25519 key, in memory only.
fn ephemeral_key() -> Result<PrivateKey> {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| Error::invalid(format!("cannot make an ephemeral ed25519 key: {e}")))
}

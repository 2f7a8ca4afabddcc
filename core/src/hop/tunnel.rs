//! What a tunnel hop (EICE, SSM) is given by the layer that builds it.
//!
//! Transports never import `aws`: the AWS layer looks the instance up and hands the hop a
//! plain [`Instance`], a [`Signer`] (fresh credentials and the region, to sign what the SDK
//! does not sign itself) and a [`KeyPush`] (SendSSHPublicKey, for SSH logins over the tunnel).
//! The traits are object-safe and return boxed futures, so the hop holds them as `Arc<dyn _>`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use aws_credential_types::Credentials;

use crate::error::Result;

/// A boxed future, as the traits here return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The instance a tunnel hop reaches, as far as the transport needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-0abc…` (or `mi-…` for a managed node).
    pub id: String,
    /// Its Name tag.
    pub name: Option<String>,
    /// The address a tunnel inside the VPC dials: private IPv4, else IPv6.
    pub private_ip: Option<IpAddr>,
    /// Its IPv6 address, if any.
    pub ipv6: Option<IpAddr>,
}

impl Instance {
    /// `web-1 (i-0abc…)`, or the id alone, for messages.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n} ({})", self.id),
            _ => self.id.clone(),
        }
    }

    /// The Name tag, else the id: how a message suggests naming it again.
    pub fn short_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.id)
    }

    /// True when `host` names the instance: its id, Name tag, or one of its addresses.
    pub fn is_named_by(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == self.id
            || self.name.as_deref() == Some(host)
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| Some(ip) == self.private_ip || Some(ip) == self.ipv6)
    }
}

/// Fresh credentials and the region: what signing a tunnel URL or a WebSocket upgrade takes.
pub trait Signer: Send + Sync {
    /// The region the hop's AWS configuration resolved to.
    fn region(&self) -> &str;
    /// Current credentials (the SDK's provider caches and refreshes them).
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials>>;
}

/// Pushes a public key that the instance accepts for 60 s (`SendSSHPublicKey`).
pub trait KeyPush: Send + Sync {
    /// Pushes `public_key` (OpenSSH form, `ssh-ed25519 AAAA…`) for `user`.
    fn push<'a>(&'a self, user: &'a str, public_key: &'a str) -> BoxFuture<'a, Result<()>>;
}

//! Script options over `~/.ssh/config` over defaults: the [`SshOptions`] of one SSH hop.

use std::path::PathBuf;
use std::time::Duration;

use super::{Env, SshRequest, expand_option_path};
use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::hop::host_key::{HostKeyCheck, HostKeyPolicy};
use crate::hop::ssh::SshOptions;
use crate::known_hosts::KnownHosts;
use crate::ssh_config::ResolvedHost;

/// Default limit for connect + handshake + auth of one SSH hop.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Merges `req` over the resolved ~/.ssh/config entry `r` over defaults.
pub fn ssh_options(
    env: &Env<'_>,
    r: &ResolvedHost,
    req: &SshRequest,
    via: Option<Hop>,
) -> Result<SshOptions> {
    let home = env.home;
    let user = req.user.clone().unwrap_or_else(|| r.user.clone());
    let port = req.port.unwrap_or(r.port);
    let (key_files, identities_only) = match &req.key {
        Some(k) => (vec![expand_option_path("key", k, home)?], true),
        None => (r.identity_files.clone(), r.identities_only),
    };
    let agent = req
        .agent
        .unwrap_or(!identities_only || key_files.is_empty());

    let (policy, known_hosts) = match req.known_hosts.as_deref() {
        None => (
            policy_from_config(r.strict_host_key_checking.as_deref()).unwrap_or(env.default_policy),
            default_known_hosts(env, r),
        ),
        Some("strict") => (HostKeyPolicy::Strict, default_known_hosts(env, r)),
        Some("accept-new") => (HostKeyPolicy::AcceptNew, default_known_hosts(env, r)),
        Some("ask") => (HostKeyPolicy::Ask, default_known_hosts(env, r)),
        Some(path) if path.contains('/') || path.starts_with('~') => (
            env.default_policy,
            KnownHosts::new(vec![expand_option_path("known_hosts", path, home)?], vec![]),
        ),
        Some(other) => {
            return Err(Error::invalid(format!(
                "option `known_hosts` is \"{other}\": use \"strict\" (the default), \"accept-new\", \
                 \"ask\", or the path of a known_hosts file"
            )));
        }
    };
    let timeout = req.timeout.or(r.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
    Ok(SshOptions {
        user,
        host: r.hostname.clone(),
        port,
        memory_keys: Vec::new(),
        before_dial: None,
        key_files,
        identities_only,
        agent,
        host_key: match &r.host_key_alias {
            // OpenSSH looks a HostKeyAlias up as written, without the port.
            Some(alias) => HostKeyCheck {
                known_hosts,
                policy,
                name: alias.clone(),
                port: 22,
            },
            None => HostKeyCheck {
                known_hosts,
                policy,
                name: r.hostname.clone(),
                port,
            },
        },
        via,
        timeout,
        server_nodelay: req.server_nodelay.unwrap_or(true),
    })
}

/// `StrictHostKeyChecking` from ~/.ssh/config (already normalized to yes, no, ask or
/// accept-new). `no`/`off` still refuse changed keys: aws-hop always verifies, so they mean
/// accept-new here.
fn policy_from_config(v: Option<&str>) -> Option<HostKeyPolicy> {
    match v? {
        "yes" => Some(HostKeyPolicy::Strict),
        "accept-new" | "no" => Some(HostKeyPolicy::AcceptNew),
        "ask" => Some(HostKeyPolicy::Ask),
        _ => None,
    }
}

fn default_known_hosts(env: &Env<'_>, r: &ResolvedHost) -> KnownHosts {
    let defaults = KnownHosts::openssh_default(env.home);
    let user = if r.user_known_hosts_files.is_empty() {
        defaults.user_files().to_vec()
    } else {
        r.user_known_hosts_files.clone()
    };
    let global: Vec<PathBuf> = if r.global_known_hosts_files.is_empty() {
        defaults.global_files().to_vec()
    } else {
        r.global_known_hosts_files.clone()
    };
    KnownHosts::new(user, global)
}

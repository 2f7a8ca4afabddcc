//! SSH to a destination, as `ssh dest` would: `~/.ssh/config` resolved, `ProxyJump` hops
//! opened first, then the host itself over the last of them (or over a `via` hop).

use super::options::ssh_options;
use super::{Env, SshRequest, blocking, instance};
use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::hop::ssh::SshHop;
use crate::ssh_config::{self, ResolvedHost};

/// Resolves `dest` (`user@host[:port]`, `ssh://…`, or a Host alias) through ~/.ssh/config.
pub async fn resolve(env: &Env<'_>, dest: &str) -> Result<ResolvedHost> {
    let parsed = ssh_config::parse_destination(dest)?;
    let home = env.home.to_path_buf();
    blocking(move || Ok(ssh_config::resolve(&parsed, None, &home)?)).await
}

/// Opens an SSH hop to `dest` with `req`, over `via` when given; otherwise over the
/// destination's `ProxyJump` hops, if any. Over an EICE or SSM hop, `dest` is the login user
/// of that hop's instance (see [`instance::login`]).
pub async fn ssh(env: &Env<'_>, dest: &str, req: &SshRequest, via: Option<Hop>) -> Result<Hop> {
    match &via {
        Some(Hop::Eice(eice)) => {
            return instance::login(env, instance::Tunnel::eice(eice.clone()), dest, req).await;
        }
        Some(Hop::Ssm(ssm)) => {
            return instance::login(env, instance::Tunnel::ssm(ssm.clone()), dest, req).await;
        }
        _ => {}
    }
    let resolved = resolve(env, dest).await?;
    if let Some(cmd) = &resolved.proxy_command
        && via.is_none()
    {
        return Err(Error::invalid(format!(
            "~/.ssh/config gives {dest} a ProxyCommand ({cmd}), which aws-hop does not run; use \
             ProxyJump there, or reach it through a hop: bastion(\"{dest}\", #{{ via: hop }})"
        )));
    }
    let via = match via {
        Some(v) => Some(v),
        None if !resolved.proxy_jump.is_empty() => {
            let mut prev: Option<Hop> = None;
            for jump in &resolved.proxy_jump {
                let jr = resolve(env, jump).await?;
                let o = ssh_options(env, &jr, &SshRequest::default(), prev.take())?;
                let hop = Hop::Ssh(SshHop::connect(o).await?);
                (env.track)(&hop);
                prev = Some(hop);
            }
            prev
        }
        None => None,
    };
    let o = ssh_options(env, &resolved, req, via)?;
    let hop = Hop::Ssh(SshHop::connect(o).await?);
    (env.track)(&hop);
    Ok(hop)
}

//! Hop bindings: `bastion()`, `direct()`, `hop.ssh()`, `hop.exec()`, `hop.shell()`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Engine, Map};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::Algorithm;

use crate::aws::config::AwsConfig;
use crate::aws::eice::EiceHop;
use crate::aws::instance_connect::send_ssh_public_key;
use crate::aws::instances::InstanceInfo;
use crate::aws::ssm::SsmHop;
use crate::error::{Error, Result};
use crate::hop::host_key::{HostKeyCheck, HostKeyPolicy};
use crate::hop::ssh::{SshHop, SshOptions};
use crate::hop::{Hop, shell};
use crate::known_hosts::KnownHosts;
use crate::script::context::{Context, script_error};
use crate::script::options::Options;
use crate::ssh_config;

/// Options of `bastion()` and `hop.ssh()`.
pub const SSH_OPTIONS: &[&str] = &[
    "key",
    "user",
    "port",
    "known_hosts",
    "agent",
    "via",
    "timeout",
    "server_nodelay",
];

/// Default limit for connect + handshake + auth of one SSH hop.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Hop>("Hop");
    engine.register_global_module(exported_module!(hop_api).into());
}

/// Opens an SSH hop to `dest` (resolved through ~/.ssh/config) with `opts`, over `via`.
pub fn open_ssh(
    ctx: &Arc<Context>,
    dest: &str,
    opts: Map,
    via: Option<Hop>,
    func: &'static str,
) -> Result<Hop> {
    let opts = Options::new(opts, func, SSH_OPTIONS)?;
    let explicit_via = opts.custom::<Hop>("via", "a hop (from bastion(), ...)")?;
    if via.is_some() && explicit_via.is_some() {
        return Err(Error::invalid(
            "option `via` does not apply to hop.ssh(): the hop it is called on is already the way \
             in (use bastion(dest, #{ via: hop }) to choose one)",
        ));
    }
    let via = via.or(explicit_via);
    let ctx2 = ctx.clone();
    let dest = dest.to_string();
    ctx.rt
        .block_on(async move { connect_chain(&ctx2, &dest, &opts, via).await })
}

/// Resolves `dest`, opens its ProxyJump hops (unless `via` is given), then the hop itself.
async fn connect_chain(ctx: &Context, dest: &str, opts: &Options, via: Option<Hop>) -> Result<Hop> {
    if let Some(Hop::Eice(eice)) = &via {
        return connect_over_eice(ctx, eice.clone(), dest, opts).await;
    }
    if let Some(Hop::Ssm(ssm)) = &via {
        return connect_over_ssm(ctx, ssm.clone(), dest, opts).await;
    }
    let parsed = ssh_config::parse_destination(dest)?;
    let resolved = ssh_config::resolve(&parsed, None, &ctx.home)?;
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
                let jp = ssh_config::parse_destination(jump)?;
                let jr = ssh_config::resolve(&jp, None, &ctx.home)?;
                let o = ssh_options(ctx, &jr, &Options::empty("ProxyJump"), prev.take())?;
                let hop = Hop::Ssh(SshHop::connect(o).await?);
                ctx.track(&hop);
                prev = Some(hop);
            }
            prev
        }
        None => None,
    };
    let o = ssh_options(ctx, &resolved, opts, via)?;
    let hop = Hop::Ssh(SshHop::connect(o).await?);
    ctx.track(&hop);
    Ok(hop)
}

/// SSH to the instance of an EICE hop (see [`connect_over_instance`]).
async fn connect_over_eice(
    ctx: &Context,
    eice: Arc<EiceHop>,
    dest: &str,
    opts: &Options,
) -> Result<Hop> {
    let ip = eice.ip();
    let checker = eice.clone();
    let login = InstanceLogin {
        via: Hop::Eice(eice.clone()),
        dial_host: if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        },
        config: eice.config().clone(),
        instance: eice.instance().clone(),
        describe: eice.describe(),
        kind: "an EICE hop",
        is_instance: Box::new(move |h| checker.is_instance(h)),
    };
    connect_over_instance(ctx, login, dest, opts).await
}

/// SSH to the instance of an SSM hop, over one `AWS-StartSSHSession` session per SSH
/// connection (see [`connect_over_instance`]).
async fn connect_over_ssm(
    ctx: &Context,
    ssm: Arc<SsmHop>,
    dest: &str,
    opts: &Options,
) -> Result<Hop> {
    let checker = ssm.clone();
    let login = InstanceLogin {
        via: Hop::Ssm(Arc::new(ssm.ssh_transport())),
        dial_host: ssm.instance().id.clone(),
        config: ssm.config().clone(),
        instance: ssm.instance().clone(),
        describe: ssm.describe(),
        kind: "an SSM hop",
        is_instance: Box::new(move |h| checker.is_instance(h)),
    };
    connect_over_instance(ctx, login, dest, opts).await
}

/// An instance that `.ssh(user)` logs in to through a tunnel hop (EICE or SSM).
struct InstanceLogin {
    /// The hop the SSH connection runs over.
    via: Hop,
    /// The host dialed through `via`: the private IP (EICE) or the instance id (SSM).
    dial_host: String,
    /// For SendSSHPublicKey.
    config: AwsConfig,
    instance: InstanceInfo,
    /// The tunnel hop, for messages.
    describe: String,
    /// "an EICE hop", for messages.
    kind: &'static str,
    /// True when a host names the instance.
    is_instance: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

/// SSH to the instance of a tunnel hop: `dest` is the user (`"ec2-user"`), or `user@host`
/// where host names that instance. The host key is looked up under the instance id (like
/// OpenSSH's HostKeyAlias), so a private IP reused by another instance cannot confuse it.
/// Without a `key` option, an ephemeral ed25519 key is made in memory and pushed with
/// SendSSHPublicKey before every dial (a pushed key is accepted for 60 s).
async fn connect_over_instance(
    ctx: &Context,
    login: InstanceLogin,
    dest: &str,
    opts: &Options,
) -> Result<Hop> {
    let (user, host) = match dest.rsplit_once('@') {
        Some((u, h)) => (u, Some(h)),
        None => (dest, None),
    };
    if let Some(h) = host
        && !(login.is_instance)(h)
    {
        return Err(Error::invalid(format!(
            "{} reaches only its instance, not {h}: write .ssh(\"{user}\") to log in to {}, then \
             .ssh(\"{user}@{h}\") on that hop to go further",
            login.describe,
            login.instance.label()
        )));
    }
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Err(Error::invalid(format!(
            "'{dest}' is not a user name: {} takes the login user, for example \
             .ssh(\"ec2-user\") (ubuntu, admin ... depend on the AMI)",
            login.kind
        )));
    }
    let target = format!("{user}@{}", login.dial_host);
    let parsed = ssh_config::parse_destination(&target)?;
    let resolved = ssh_config::resolve(&parsed, None, &ctx.home)?;
    let mut o = ssh_options(ctx, &resolved, opts, Some(login.via.clone()))?;
    o.host_key.name.clone_from(&login.instance.id);
    o.host_key.port = 22;
    if opts.string("key")?.is_none() {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .map_err(|e| Error::invalid(format!("cannot make an ephemeral ed25519 key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::invalid(format!("cannot encode the ephemeral key: {e}")))?;
        let user = o.user.clone();
        let (config, instance) = (login.config.clone(), login.instance.clone());
        o.memory_keys.insert(0, Arc::new(key));
        o.before_dial = Some(Arc::new(move || {
            let (config, instance, user, public) = (
                config.clone(),
                instance.clone(),
                user.clone(),
                public.clone(),
            );
            Box::pin(async move { send_ssh_public_key(&config, &instance, &user, &public).await })
        }));
    }
    let hop = Hop::Ssh(SshHop::connect(o).await?);
    ctx.track(&hop);
    Ok(hop)
}

/// Merges script options over ~/.ssh/config over defaults.
fn ssh_options(
    ctx: &Context,
    r: &ssh_config::ResolvedHost,
    opts: &Options,
    via: Option<Hop>,
) -> Result<SshOptions> {
    let user = opts.string("user")?.unwrap_or_else(|| r.user.clone());
    let port = opts.port("port")?.unwrap_or(r.port);
    let (key_files, identities_only) = match opts.string("key")? {
        Some(k) => (vec![expand_option_path("key", &k, &ctx.home)?], true),
        None => (r.identity_files.clone(), r.identities_only),
    };
    let agent = opts
        .bool("agent")?
        .unwrap_or(!identities_only || key_files.is_empty());

    let (policy, known_hosts) = match opts.string("known_hosts")?.as_deref() {
        None => (
            policy_from_config(r.strict_host_key_checking.as_deref())
                .unwrap_or_else(|| ctx.default_host_key_policy()),
            default_known_hosts(ctx, r),
        ),
        Some("strict") => (HostKeyPolicy::Strict, default_known_hosts(ctx, r)),
        Some("accept-new") => (HostKeyPolicy::AcceptNew, default_known_hosts(ctx, r)),
        Some("ask") => (HostKeyPolicy::Ask, default_known_hosts(ctx, r)),
        Some(path) if path.contains('/') || path.starts_with('~') => (
            ctx.default_host_key_policy(),
            KnownHosts::new(
                vec![expand_option_path("known_hosts", path, &ctx.home)?],
                vec![],
            ),
        ),
        Some(other) => {
            return Err(Error::invalid(format!(
                "option `known_hosts` is \"{other}\": use \"strict\" (the default), \"accept-new\", \
                 \"ask\", or the path of a known_hosts file"
            )));
        }
    };
    let timeout = opts
        .seconds("timeout")?
        .or(r.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
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
        server_nodelay: opts.bool("server_nodelay")?.unwrap_or(true),
    })
}

/// A path option with `~` expanded as ~/.ssh/config paths are.
fn expand_option_path(option: &str, path: &str, home: &Path) -> Result<PathBuf> {
    ssh_config::tilde_expand(path, home)
        .map_err(|why| Error::invalid(format!("option `{option}` (\"{path}\"): {why}")))
}

/// `StrictHostKeyChecking` from ~/.ssh/config (already normalized to yes, no, ask or
/// accept-new). `no`/`off` still refuse changed keys: aws-hop
/// always verifies, so they mean accept-new here.
fn policy_from_config(v: Option<&str>) -> Option<HostKeyPolicy> {
    match v? {
        "yes" => Some(HostKeyPolicy::Strict),
        "accept-new" | "no" => Some(HostKeyPolicy::AcceptNew),
        "ask" => Some(HostKeyPolicy::Ask),
        _ => None,
    }
}

fn default_known_hosts(ctx: &Context, r: &ssh_config::ResolvedHost) -> KnownHosts {
    let defaults = KnownHosts::openssh_default(&ctx.home);
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

fn exec_map(out: crate::hop::exec::ExecOutput) -> Map {
    let mut m = Map::new();
    m.insert("status".into(), out.status.into());
    m.insert(
        "stdout".into(),
        String::from_utf8_lossy(&out.stdout).into_owned().into(),
    );
    m.insert(
        "stderr".into(),
        String::from_utf8_lossy(&out.stderr).into_owned().into(),
    );
    m
}

fn ssh_hop(
    ctx: &NativeCallContext,
    hop: &Hop,
    what: &str,
) -> Result<Arc<SshHop>, Box<EvalAltResult>> {
    match hop {
        Hop::Ssh(s) => Ok(s.clone()),
        Hop::Direct => Err(script_error(
            ctx,
            format!("{what} needs an SSH hop (from bastion() or .ssh()), not direct()"),
        )),
        Hop::Eice(e) => Err(script_error(
            ctx,
            format!(
                "{what} needs an SSH hop, and {} is an EICE tunnel: log in over it first, \
                 e.g. eic_endpoint(\"{}\").ssh(\"ec2-user\")",
                e.describe(),
                e.instance().id
            ),
        )),
        Hop::Ssm(s) => Err(script_error(
            ctx,
            format!(
                "{what} needs an SSH hop, and {} is a Session Manager hop: log in over it \
                 first, e.g. ssm(\"{}\").ssh(\"ec2-user\") (shell() works on it directly)",
                s.describe(),
                s.instance().id
            ),
        )),
    }
}

#[export_module]
#[allow(unreachable_pub)]
mod hop_api {
    use super::*;

    /// A hop: opens connections to `host:port` through itself (an SSH session, or direct TCP).
    pub type Hop = crate::hop::Hop;

    /// Opens an SSH session to a bastion, like `ssh user@host`, for forwards and commands.
    ///
    /// `dest` is `user@host[:port]` or a Host alias from ~/.ssh/config (HostName, User, Port,
    /// IdentityFile and ProxyJump are honoured). The host key must be in known_hosts.
    ///
    /// ```rhai
    /// let b = bastion("ec2-user@bastion.example.com");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn bastion(ctx: NativeCallContext, dest: &str) -> Result<Hop, Box<EvalAltResult>> {
        open_ssh(&Context::of(&ctx), dest, Map::new(), None, "bastion")
            .map_err(|e| script_error(&ctx, e))
    }

    /// `bastion(dest, opts)`: options `key`, `user`, `port`, `known_hosts` ("strict", "accept-new",
    /// "ask" or a file), `agent`, `via` (a hop to reach the bastion through), `timeout` (seconds),
    /// `server_nodelay`.
    ///
    /// ```rhai
    /// let b = bastion("ec2-user@1.2.3.4:22", #{ key: "~/.ssh/example.pem", known_hosts: "accept-new" });
    /// ```
    #[rhai_fn(name = "bastion", return_raw)]
    pub fn bastion_with(
        ctx: NativeCallContext,
        dest: &str,
        opts: Map,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_ssh(&Context::of(&ctx), dest, opts, None, "bastion").map_err(|e| script_error(&ctx, e))
    }

    /// The hop that connects straight from this machine (no tunnel).
    ///
    /// ```rhai
    /// let f = forward(8080, "localhost:80", direct());
    /// ```
    pub fn direct() -> Hop {
        Hop::Direct
    }

    /// SSH to `dest` *through* this hop (multi-hop): the next host's sshd is reached over a
    /// stream of this one, and its name resolves on this hop's side.
    ///
    /// ```rhai
    /// let app = bastion("ec2-user@bastion").ssh("ec2-user@10.0.2.15");
    /// ```
    #[rhai_fn(global, name = "ssh", return_raw, pure)]
    pub fn ssh(
        ctx: NativeCallContext,
        hop: &mut Hop,
        dest: &str,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_ssh(
            &Context::of(&ctx),
            dest,
            Map::new(),
            Some(hop.clone()),
            "ssh",
        )
        .map_err(|e| script_error(&ctx, e))
    }

    /// `hop.ssh(dest, opts)`, with the options of `bastion()` except `via` (the hop is the via).
    #[rhai_fn(global, name = "ssh", return_raw, pure)]
    pub fn ssh_with(
        ctx: NativeCallContext,
        hop: &mut Hop,
        dest: &str,
        opts: Map,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_ssh(&Context::of(&ctx), dest, opts, Some(hop.clone()), "ssh")
            .map_err(|e| script_error(&ctx, e))
    }

    /// Runs a command on an SSH hop; returns `#{ status, stdout, stderr }`.
    ///
    /// ```rhai
    /// let r = b.exec("uname -a");
    /// print(r.stdout);
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn exec(
        ctx: NativeCallContext,
        hop: &mut Hop,
        cmd: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        let s = ssh_hop(&ctx, hop, "exec()")?;
        let c = Context::of(&ctx);
        let cmd = cmd.to_string();
        c.rt.block_on(async move { s.exec(&cmd).await })
            .map(exec_map)
            .map_err(|e| script_error(&ctx, e))
    }

    /// Hands the terminal to an interactive shell on an SSH hop (or a Session Manager shell
    /// on an `ssm()` hop); returns its exit status.
    ///
    /// ```rhai
    /// b.shell();
    /// ```
    #[rhai_fn(global, return_raw, pure)]
    pub fn shell(ctx: NativeCallContext, hop: &mut Hop) -> Result<i64, Box<EvalAltResult>> {
        if let Hop::Ssm(ssm) = hop {
            let ssm = ssm.clone();
            return Context::of(&ctx)
                .rt
                .block_on(async move { crate::aws::ssm::shell::interactive(&ssm).await })
                .map_err(|e| script_error(&ctx, e));
        }
        let s = ssh_hop(&ctx, hop, "shell()")?;
        let c = Context::of(&ctx);
        c.rt.block_on(async move { shell::interactive(&s).await })
            .map_err(|e| script_error(&ctx, e))
    }

    /// Closes the hop's SSH session; forwards through it fail from then on.
    #[rhai_fn(global, name = "close", return_raw, pure)]
    pub fn close_hop(ctx: NativeCallContext, hop: &mut Hop) -> Result<(), Box<EvalAltResult>> {
        let h = hop.clone();
        Context::of(&ctx)
            .rt
            .block_on(async move {
                h.close().await;
                Ok(())
            })
            .map_err(|e| script_error(&ctx, e))
    }

    /// The hop in one line, e.g. `ssh ec2-user@10.0.0.5:22 via ssh ...`.
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn hop_to_string(hop: &mut Hop) -> String {
        hop.describe()
    }

    /// As `to_string`.
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn hop_to_debug(hop: &mut Hop) -> String {
        format!("Hop({})", hop.describe())
    }
}

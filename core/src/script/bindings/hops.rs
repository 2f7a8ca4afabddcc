//! Hop bindings: `bastion()`, `direct()`, `hop.ssh()`, `hop.exec()`, `hop.shell()`.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Engine, Map};

use crate::error::{Error, Result};
use crate::hop::ssh::SshHop;
use crate::hop::{Hop, shell};
use crate::login::{self, SshRequest};
use crate::script::context::{Context, script_error};
use crate::script::options::Options;

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

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Hop>("Hop");
    engine.register_global_module(exported_module!(hop_api).into());
}

/// The SSH options of a script's options map.
pub fn ssh_request(opts: &Options) -> Result<SshRequest> {
    Ok(SshRequest {
        key: opts.string("key")?,
        user: opts.string("user")?,
        port: opts.port("port")?,
        known_hosts: opts.string("known_hosts")?,
        agent: opts.bool("agent")?,
        timeout: opts.seconds("timeout")?,
        server_nodelay: opts.bool("server_nodelay")?,
    })
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
    let req = ssh_request(&opts)?;
    let c = ctx.clone();
    let dest = dest.to_string();
    ctx.rt.block_on(async move {
        let track = |h: &Hop| c.track(h);
        let env = login::Env {
            home: &c.home,
            default_policy: c.default_host_key_policy(),
            track: &track,
        };
        login::chain::ssh(&env, &dest, &req, via).await
    })
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
    m.insert("truncated".into(), out.truncated.into());
    m
}

/// Runs `cmd` on an SSH hop with the options of `exec(cmd, opts)`.
fn exec_with(
    ctx: &NativeCallContext,
    hop: &Hop,
    cmd: &str,
    opts: Map,
) -> std::result::Result<Map, Box<EvalAltResult>> {
    let s = ssh_hop(ctx, hop, "exec()")?;
    let opts = Options::new(opts, "exec", &["max_output"]).map_err(|e| script_error(ctx, e))?;
    let limit = opts
        .int_in("max_output", 1..=MAX_OUTPUT_LIMIT)
        .map_err(|e| script_error(ctx, e))?
        .map_or(crate::hop::exec::DEFAULT_LIMIT, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
    let c = Context::of(ctx);
    let cmd = cmd.to_string();
    let hop_shown = s.describe();
    let out =
        c.rt.block_on(async move { s.exec(&cmd, limit).await })
            .map_err(|e| script_error(ctx, e))?;
    if out.truncated {
        crate::events::emit(format!(
            "exec() on {hop_shown}: output past {limit} bytes was dropped (the result has truncated: \
             true); raise it with exec(cmd, #{{ max_output: ... }}), or write the output to a \
             file on the host"
        ));
    }
    Ok(exec_map(out))
}

/// The largest `max_output` of `exec()`: 1 GiB (the output is held in memory, twice over
/// while it becomes a string).
const MAX_OUTPUT_LIMIT: i64 = 1 << 30;

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

    /// Runs a command on an SSH hop; returns `#{ status, stdout, stderr, truncated }`.
    /// At most 16 MiB of stdout and of stderr are kept (`truncated` says when more came).
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
        exec_with(&ctx, hop, cmd, Map::new())
    }

    /// `hop.exec(cmd, opts)`: `max_output`, the bytes of stdout and of stderr kept (16 MiB by
    /// default, at most 1 GiB).
    ///
    /// ```rhai
    /// let r = b.exec("cat /var/log/big.log", #{ max_output: 100_000_000 });
    /// ```
    #[rhai_fn(global, name = "exec", return_raw, pure)]
    pub fn exec_opts(
        ctx: NativeCallContext,
        hop: &mut Hop,
        cmd: &str,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        exec_with(&ctx, hop, cmd, opts)
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
                .block_on(async move { crate::hop::ssm::shell::interactive(&ssm).await })
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

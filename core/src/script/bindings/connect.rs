//! Strategy bindings: `connect()` and `ssh_options()`.
//!
//! `connect(target)` runs the strategy plugins in order ([`crate::strategy::attempt`]) and
//! returns the first hop that logs in; `connect(target, #{ strategies: ["ssm", "eice"] })`
//! chooses and orders them. Every other option goes to each plugin, which takes the keys it
//! knows (plugins use `ssh_options(opts)` to pass on the SSH ones).

use rhai::plugin::*;
use rhai::{Array, Engine, Map};

use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::script::bindings::hops::SSH_OPTIONS;
use crate::script::context::{Context, script_error};
use crate::strategy::attempt::{self, Goal};

pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(connect_api).into());
}

/// `strategies` as a comma-separated list: a string, or an array of strings.
fn strategies_of(opts: &mut Map) -> Result<Option<String>> {
    let Some(v) = opts.remove("strategies") else {
        return Ok(None);
    };
    if let Some(s) = v.clone().try_cast::<rhai::ImmutableString>() {
        return Ok(Some(s.to_string()));
    }
    if let Some(a) = v.clone().try_cast::<Array>() {
        let names: Option<Vec<String>> = a
            .into_iter()
            .map(|x| x.try_cast::<rhai::ImmutableString>().map(|s| s.to_string()))
            .collect();
        if let Some(names) = names {
            return Ok(Some(names.join(",")));
        }
    }
    Err(Error::invalid(
        "option `strategies` of connect() is a plugin name or an array of them, \
         for example [\"eice\", \"ssm\"]",
    ))
}

/// `connect()` for scripts: the winning hop, or the report of every attempt as the error.
fn connect_with(
    ctx: &NativeCallContext,
    target: Dynamic,
    mut opts: Map,
) -> std::result::Result<Hop, Box<EvalAltResult>> {
    let c = Context::of(ctx);
    let strategies = strategies_of(&mut opts).map_err(|e| script_error(ctx, e))?;
    let chosen = {
        let plugins = c.plugins.read().expect("plugins lock");
        let chosen =
            attempt::choose(&plugins, strategies.as_deref()).map_err(|e| script_error(ctx, e))?;
        attempt::check_options(
            &plugins,
            &chosen,
            opts.keys().map(rhai::Identifier::as_str),
            "connect()",
        )
        .map_err(|e| script_error(ctx, e))?;
        chosen
    };
    let interrupted = || c.rt.interrupted();
    match attempt::try_in_order(
        ctx.engine(),
        &chosen,
        &target,
        &opts,
        Goal::Session,
        &interrupted,
    ) {
        Ok((hop, report)) => {
            tracing::info!("connect {}: {}", report.target, report.summary());
            if report.attempts.len() > 1 {
                crate::events::emit(format!("connect {}: {}", report.target, report.summary()));
            }
            Ok(hop)
        }
        Err(report) => Err(script_error(ctx, report)),
    }
}

#[export_module]
#[allow(unreachable_pub)]
mod connect_api {
    use super::*;

    /// Reaches `target` (an instance id, Name tag, host name or a map from instance()) with the
    /// first strategy plugin that works, in `plugins()` order, and returns its hop. When one
    /// fails, the next is tried; when all fail, the error lists every attempt and its cause.
    ///
    /// ```rhai
    /// let h = connect("web-1");
    /// print(h.exec("hostname").stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect(ctx: NativeCallContext, target: Dynamic) -> Result<Hop, Box<EvalAltResult>> {
        connect_with(&ctx, target, Map::new())
    }

    /// `connect(target, opts)`: `strategies` (a name or an array: which plugins, in which
    /// order); every other option goes to the plugins (`user`, `key`, `bastion`, `endpoint`,
    /// `profile`, `region` ...).
    ///
    /// ```rhai
    /// let h = connect("web-1", #{ strategies: ["ssm", "eice"], user: "ubuntu" });
    /// ```
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect_opts(
        ctx: NativeCallContext,
        target: Dynamic,
        opts: Map,
    ) -> Result<Hop, Box<EvalAltResult>> {
        connect_with(&ctx, target, opts)
    }

    /// The SSH options of `opts` (`key`, `user`, `port`, `known_hosts`, `agent`, `timeout`,
    /// `server_nodelay`), for plugins that pass their options on to `.ssh()`.
    ///
    /// ```rhai
    /// fn open(target, opts) { direct().ssh(target, ssh_options(opts)) }
    /// ```
    pub fn ssh_options(opts: Map) -> Map {
        opts.into_iter()
            .filter(|(k, _)| k.as_str() != "via" && SSH_OPTIONS.contains(&k.as_str()))
            .collect()
    }
}

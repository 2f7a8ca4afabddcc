//! Forward bindings: `forward()`, `hop.forward()`, `forwards()`, and the `Forward` type.

use rhai::plugin::*;
use rhai::{Array, Engine, Map};

use crate::events;
use crate::forward::{BindSpec, Forward};
use crate::hop::{Hop, split_host_port};
use crate::script::context::{Context, script_error};

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<Forward>("Forward");
    engine.register_global_module(exported_module!(forward_api).into());
}

/// Reads the `local` argument: a port number or an `"addr:port"` string.
fn bind_spec(local: &Dynamic) -> crate::Result<BindSpec> {
    if let Ok(p) = local.as_int() {
        return u16::try_from(p).map(BindSpec::port).map_err(|_| {
            crate::Error::invalid(format!(
                "local port {p} is out of range (0-65535; 0 picks a free port)"
            ))
        });
    }
    if let Ok(s) = local.clone().into_string() {
        return BindSpec::parse(&s);
    }
    Err(crate::Error::invalid(format!(
        "the local side of a forward is a port (3307) or \"addr:port\", not {}",
        local.type_name()
    )))
}

/// Opens and registers a forward; announces it on stderr.
fn open(
    ctx: &NativeCallContext,
    local: &Dynamic,
    remote: &str,
    hop: Hop,
) -> Result<Forward, Box<EvalAltResult>> {
    let c = Context::of(ctx);
    let bind = bind_spec(local).map_err(|e| script_error(ctx, e))?;
    let (host, port) = split_host_port(remote).map_err(|e| script_error(ctx, e))?;
    let f =
        c.rt.block_on(async move { Forward::open(&bind, &host, port, hop).await })
            .map_err(|e| script_error(ctx, e))?;
    c.forwards.add(f.clone());
    events::emit(format!(
        "forwarding {} -> {} via {}",
        f.local_addr(),
        f.remote(),
        f.hop().describe()
    ));
    Ok(f)
}

fn stats_map(f: &Forward) -> Map {
    let s = f.stats();
    let mut m = Map::new();
    let int = |v: u64| Dynamic::from(i64::try_from(v).unwrap_or(i64::MAX));
    m.insert("connections".into(), int(s.connections));
    m.insert("active".into(), int(s.active));
    m.insert("failed".into(), int(s.failed));
    m.insert("bytes_in".into(), int(s.bytes_in));
    m.insert("bytes_out".into(), int(s.bytes_out));
    m.insert(
        "last_error".into(),
        s.last_error.map_or(Dynamic::UNIT, Dynamic::from),
    );
    m.insert("open".into(), f.is_open().into());
    m
}

#[export_module]
#[allow(unreachable_pub)]
mod forward_api {
    use super::*;

    /// A local listener whose every connection goes through a hop to a remote `host:port`.
    pub type Forward = crate::forward::Forward;

    /// Listens on `local` (a port on 127.0.0.1, or `"addr:port"`; 0 picks a free port) and
    /// carries each connection to `remote` through `hop`, like `ssh -L`. The remote name is
    /// resolved on the hop's side, so private RDS endpoints work.
    ///
    /// ```rhai
    /// let f = forward(3307, "mydb.abc.eu-west-1.rds.amazonaws.com:3306", b);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn forward(
        ctx: NativeCallContext,
        local: Dynamic,
        remote: &str,
        hop: Hop,
    ) -> Result<Forward, Box<EvalAltResult>> {
        open(&ctx, &local, remote, hop)
    }

    /// `hop.forward(local, remote)`: the same as `forward(local, remote, hop)`.
    ///
    /// ```rhai
    /// let f = b.forward("127.0.0.1:5432", "db.internal:5432");
    /// ```
    #[rhai_fn(global, name = "forward", return_raw, pure)]
    pub fn hop_forward(
        ctx: NativeCallContext,
        hop: &mut Hop,
        local: Dynamic,
        remote: &str,
    ) -> Result<Forward, Box<EvalAltResult>> {
        open(&ctx, &local, remote, hop.clone())
    }

    /// The forwards that are open, oldest first.
    ///
    /// ```rhai
    /// for f in forwards() { print(f); }
    /// ```
    pub fn forwards(ctx: NativeCallContext) -> Array {
        Context::of(&ctx)
            .forwards
            .list()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    }

    /// The local port (the real one when 0 was asked for).
    #[rhai_fn(global, get = "local_port", pure)]
    pub fn local_port(f: &mut Forward) -> i64 {
        i64::from(f.local_port())
    }

    /// The local address, `"127.0.0.1:3307"`.
    #[rhai_fn(global, get = "local_addr", pure)]
    pub fn local_addr(f: &mut Forward) -> String {
        f.local_addr().to_string()
    }

    /// The remote `host:port`.
    #[rhai_fn(global, get = "remote", pure)]
    pub fn remote(f: &mut Forward) -> String {
        f.remote()
    }

    /// The hop connections go through.
    #[rhai_fn(global, get = "hop", pure)]
    pub fn hop(f: &mut Forward) -> Hop {
        f.hop().clone()
    }

    /// True until `close()`.
    #[rhai_fn(global, get = "is_open", pure)]
    pub fn is_open(f: &mut Forward) -> bool {
        f.is_open()
    }

    /// `#{ connections, active, failed, bytes_in, bytes_out, last_error, open }`.
    #[rhai_fn(global, pure)]
    pub fn stats(f: &mut Forward) -> Map {
        stats_map(f)
    }

    /// Stops listening and ends the forward's connections.
    #[rhai_fn(global, name = "close", pure)]
    pub fn close_forward(f: &mut Forward) {
        f.close();
    }

    /// One line: `forward 127.0.0.1:3307 -> db:3306 via ssh ... (2 connections, ...)`.
    #[rhai_fn(global, name = "to_string", pure)]
    pub fn forward_to_string(f: &mut Forward) -> String {
        f.to_string()
    }

    /// As `to_string`.
    #[rhai_fn(global, name = "to_debug", pure)]
    pub fn forward_to_debug(f: &mut Forward) -> String {
        f.to_string()
    }
}

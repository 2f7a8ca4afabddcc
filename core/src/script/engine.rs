//! Builds the Rhai engine that the REPL, `run`, `-e` and `check` share.

use std::sync::Arc;

use rhai::Engine;
use rhai::module_resolvers::FileModuleResolver;

use super::Context;
use super::bindings;

/// An engine with aws-hop's limits, Ctrl-C polling, and all bindings, carrying `ctx`.
pub fn build_engine(ctx: &Arc<Context>) -> Engine {
    let mut engine = Engine::new();

    // Limits: generous for real scripts, finite for runaway ones. No operation limit: a script
    // may legitimately loop while it waits on forwards; Ctrl-C stops it instead.
    engine.set_max_call_levels(64);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(64 << 20);
    engine.set_max_array_size(1_000_000);
    engine.set_max_map_size(100_000);
    engine.set_max_modules(256);

    let rt = ctx.rt.clone();
    engine.on_progress(move |_| rt.interrupted().then(|| "interrupted (Ctrl-C)".into()));
    engine.on_print(|s| println!("{s}"));
    engine.on_debug(|s, src, pos| match src {
        Some(src) => eprintln!("[{src}:{}] {s}", pos.line().unwrap_or(0)),
        None => eprintln!("[debug] {s}"),
    });

    // `import "lib/common" as c;` resolves next to the importing script; edited files are
    // re-read (no cache), as in rhai-repl.
    let mut resolver = FileModuleResolver::new();
    resolver.enable_cache(false);
    engine.set_module_resolver(resolver);

    engine.set_default_tag(ctx.clone().into_tag());
    bindings::register_all(&mut engine);
    engine
}

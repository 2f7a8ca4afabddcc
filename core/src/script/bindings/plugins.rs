//! Plugin bindings: `plugins()`.

use rhai::plugin::*;
use rhai::{Array, Engine, Map};

use crate::script::context::Context;

pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(plugin_api).into());
}

#[export_module]
#[allow(unreachable_pub)]
mod plugin_api {
    use super::*;

    /// The loaded strategy plugins: `[#{ name, summary, origin, options }]`, in connect()
    /// order (`options`: what the plugin takes, or `()` when it does not say).
    ///
    /// ```rhai
    /// for p in plugins() { print(`${p.name}: ${p.summary}`); }
    /// ```
    pub fn plugins(ctx: NativeCallContext) -> Array {
        Context::of(&ctx)
            .plugins
            .read()
            .expect("plugins lock")
            .list()
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("name".into(), p.name.clone().into());
                m.insert("summary".into(), p.summary.clone().into());
                m.insert("origin".into(), p.origin.clone().into());
                m.insert(
                    "options".into(),
                    p.options.as_ref().map_or(Dynamic::UNIT, |o| {
                        Dynamic::from_array(o.iter().map(|s| s.clone().into()).collect())
                    }),
                );
                Dynamic::from_map(m)
            })
            .collect()
    }
}

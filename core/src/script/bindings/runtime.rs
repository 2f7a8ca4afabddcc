//! Runtime bindings: `wait()` and `sleep()`.

use rhai::Engine;
use rhai::plugin::*;

use crate::events;
use crate::script::context::{Context, script_error};

pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(runtime_api).into());
}

/// Holds until Ctrl-C, then closes the forwards (shared by `wait()` and `aws-hop run`).
pub fn hold_forwards(c: &Context) {
    let n = c.forwards.list().len();
    if n == 0 {
        return;
    }
    events::emit(format!(
        "holding {n} forward{}; press Ctrl-C to close {}",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" }
    ));
    c.rt.wait_for_interrupt();
    c.forwards.close_all();
    events::emit("forwards closed");
}

#[export_module]
#[allow(unreachable_pub)]
mod runtime_api {
    use super::*;

    /// Holds the open forwards until Ctrl-C, then closes them (like `ssh -N`). Returns at once
    /// when no forward is open.
    ///
    /// ```rhai
    /// forward(3307, "db:3306", b);
    /// wait();
    /// ```
    pub fn wait(ctx: NativeCallContext) {
        let c = Context::of(&ctx);
        hold_forwards(&c);
        // Ctrl-C ended the wait, not the script: let the lines after wait() run.
        c.rt.reset_interrupt();
    }

    /// Sleeps for `secs` seconds (Ctrl-C interrupts).
    ///
    /// ```rhai
    /// sleep(1.5);
    /// ```
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_float(ctx: NativeCallContext, secs: f64) -> Result<(), Box<EvalAltResult>> {
        let d = crate::script::options::duration_in(
            "the argument of sleep()",
            secs,
            crate::script::options::MAX_SLEEP,
        )
        .map_err(|e| {
            script_error(
                &ctx,
                format!("{e} (30 days; wait() holds forwards until Ctrl-C)"),
            )
        })?;
        Context::of(&ctx)
            .rt
            .sleep(d)
            .map_err(|e| script_error(&ctx, e))
    }

    /// Sleeps for `secs` whole seconds.
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_int(ctx: NativeCallContext, secs: i64) -> Result<(), Box<EvalAltResult>> {
        #[allow(clippy::cast_precision_loss)]
        sleep_float(ctx, secs as f64)
    }
}

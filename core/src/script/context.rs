//! The host state behind the bindings.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, NativeCallContext};

use crate::forward::Registry;
use crate::hop::Hop;
use crate::hop::host_key::HostKeyPolicy;
use crate::runtime::Runtime;
use crate::strategy::Plugins;

/// What every binding needs; stored as the engine's default tag, read with [`Context::of`].
pub struct Context {
    /// The I/O runtime and Ctrl-C state.
    pub rt: Runtime,
    /// Live forwards.
    pub forwards: Registry,
    /// True in the REPL: unknown host keys are asked about instead of refused.
    pub interactive: bool,
    /// Loaded strategy plugins.
    pub plugins: std::sync::RwLock<Plugins>,
    /// The user's home (for `~`, ~/.ssh).
    pub home: PathBuf,
    /// Every hop the bindings opened, so that [`Context::shutdown`] can close them cleanly.
    pub hops: std::sync::Mutex<Vec<Hop>>,
    /// AWS SDK configurations loaded so far, one per (profile, region).
    pub aws: crate::aws::config::AwsConfigs,
}

impl Context {
    /// The context of the engine running this native call.
    pub fn of(ctx: &NativeCallContext) -> Arc<Context> {
        ctx.tag()
            .and_then(|t| t.clone().try_cast::<Arc<Context>>())
            .expect("aws-hop engine without its context")
    }

    /// The default for unknown host keys in this mode.
    pub fn default_host_key_policy(&self) -> HostKeyPolicy {
        if self.interactive {
            HostKeyPolicy::Ask
        } else {
            HostKeyPolicy::Strict
        }
    }

    /// Remembers a hop for [`Context::shutdown`].
    pub fn track(&self, hop: &Hop) {
        self.hops.lock().expect("hops lock").push(hop.clone());
    }

    /// Closes every forward, then every hop (a clean SSH disconnect for each server).
    pub fn shutdown(&self) {
        self.forwards.close_all();
        let hops: Vec<Hop> = std::mem::take(&mut *self.hops.lock().expect("hops lock"));
        if hops.is_empty() {
            return;
        }
        self.rt.handle().block_on(async move {
            let closing = async {
                for h in hops.iter().rev() {
                    h.close().await;
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), closing).await;
        });
    }

    /// Wraps the context for `Engine::set_default_tag`.
    pub fn into_tag(self: Arc<Self>) -> Dynamic {
        Dynamic::from(self)
    }
}

/// Turns any error into a Rhai runtime error at the call's position.
pub fn script_error(ctx: &NativeCallContext, e: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(e.to_string().into(), ctx.call_position()).into()
}

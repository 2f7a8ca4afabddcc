//! The Rhai engine and everything around it.
//!
//! - [`context`]: [`Context`], the host state every binding reaches through the engine's tag
//!   (runtime, live forwards, REPL or script mode, plugins).
//! - [`engine`]: builds the [`rhai::Engine`]: limits, Ctrl-C polling, print routing, the module
//!   resolver for plugins, and the bindings.
//! - [`bindings`]: one `register(engine)` per area (hops, forwards, runtime, plugins).
//! - [`options`]: reading option maps (`#{ key: "...", timeout: 10 }`) with clear errors for
//!   unknown keys and wrong types.
//! - [`checker`]: the static checks of `aws-hop check` (unknown functions, with suggestions).

pub mod bindings;
pub mod checker;
pub mod context;
pub mod engine;
pub mod options;

pub use context::Context;
pub use engine::build_engine;

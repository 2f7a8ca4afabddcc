//! Native bindings, one area per file, each with `register(engine)`.
//!
//! | area | bindings |
//! |---|---|
//! | [`hops`] | `bastion()`, `direct()`, `hop.ssh()`, `hop.exec()`, `hop.shell()`, `hop.close()` |
//! | [`aws`] | `instance()`, `instances()`, `eic_endpoint()` (`.ssh()` on it is in [`hops`]) |
//! | [`forwards`] | `forward()`, `hop.forward()`, `forwards()`, `f.local_port`, `f.stats()`, `f.close()` |
//! | [`runtime`] | `wait()`, `sleep()` |
//! | [`plugins`] | `plugins()` |
//! | [`connect`] | `connect()`, `ssh_options()` |
//!
//! Every binding that can fail returns a Rhai runtime error at the call's position, whose
//! message is the library error's full text (cause and fix).

pub mod aws;
pub mod connect;
pub mod forwards;
pub mod hops;
pub mod plugins;
pub mod runtime;

use rhai::Engine;

/// The binding areas, in one visible list.
const AREAS: &[fn(&mut Engine)] = &[
    hops::register,
    aws::register,
    forwards::register,
    runtime::register,
    plugins::register,
    connect::register,
];

/// Registers every binding area.
pub fn register_all(engine: &mut Engine) {
    for register in AREAS {
        register(engine);
    }
}

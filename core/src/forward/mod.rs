//! Local port forwards: `forward(3307, "db:3306", hop)`.
//!
//! - [`listener`]: [`Forward`], a bound local listener and the task that accepts on it; each
//!   accepted connection opens a stream through the hop and is pumped both ways.
//! - [`pump`]: the per-connection copy (256 KiB buffers, half-close carried, failures turn into
//!   a reset so a client never mistakes a broken transfer for a complete one).
//! - [`stats`]: live counters a forward reports with `stats()`.
//! - [`registry`]: every live forward of the process, for `forwards()`, `.forwards` and closing
//!   everything at exit.
//!
//! A forward outlives failures of its hop: a connection that cannot be opened is refused with
//! the reason (an event, and `stats().last_error`), and the listener keeps accepting. When the
//! hop is an SSH session that was lost, the next connection re-dials it.

pub mod listener;
pub mod pump;
pub mod registry;
pub mod stats;

pub use listener::{BindSpec, Forward};
pub use registry::Registry;
pub use stats::StatsSnapshot;

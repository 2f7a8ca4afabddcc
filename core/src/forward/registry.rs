//! Every live forward of the process.
//!
//! Bindings add each forward they open; `forwards()` and `.forwards` list them; at exit (end of
//! `aws-hop run`, Ctrl-D in the REPL) [`Registry::close_all`] closes them. Closed forwards are
//! dropped from the list the next time it is read.

use std::sync::{Arc, Mutex};

use super::Forward;

/// The list of forwards; cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    forwards: Arc<Mutex<Vec<Forward>>>,
}

impl Registry {
    /// Adds a forward.
    pub fn add(&self, f: Forward) {
        self.forwards.lock().expect("registry lock").push(f);
    }

    /// The open forwards, oldest first.
    pub fn list(&self) -> Vec<Forward> {
        let mut v = self.forwards.lock().expect("registry lock");
        v.retain(Forward::is_open);
        v.clone()
    }

    /// Closes every forward.
    pub fn close_all(&self) {
        for f in self.forwards.lock().expect("registry lock").drain(..) {
            f.close();
        }
    }
}

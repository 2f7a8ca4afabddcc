//! Sockets inside a lab namespace, from this process, without spawning anything.
//!
//! A socket belongs to the network namespace of the thread that creates it, and keeps it
//! for life. [`in_netns`] runs a closure on a fresh thread that first joins the namespace
//! (`setns` on `/run/netns/NS`, which affects only that thread); the sockets it returns
//! then work from any thread. That gives [`connect_in`] (a client "on the bastion") and
//! [`listen_in`] (a server "in the private subnet") at the cost of one thread.
//!
//! Name lookups inside the closure still see the root's `/etc/hosts` (the mount namespace
//! is not changed): use addresses, or `ip netns exec` for anything that resolves names.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

/// Runs `f` on a thread that has joined network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path = Path::new("/run/netns").join(ns);
    thread::scope(|s| {
        s.spawn(|| {
            let handle = File::open(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?;
            setns(&handle, CloneFlags::CLONE_NEWNET).map_err(|e| {
                io::Error::other(format!("cannot enter network namespace {ns}: {e}"))
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Connects to `addr` from inside namespace `ns`.
pub fn connect_in(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_netns(ns, || TcpStream::connect_timeout(&addr, timeout))
}

/// Binds a listener on `addr` inside namespace `ns`.
pub fn listen_in(ns: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    in_netns(ns, || TcpListener::bind(addr))
}

/// Polls until `addr` accepts a TCP connection from inside `ns`, or `timeout` passes.
/// `give_up` is asked between attempts, e.g. "did the daemon exit?", and ends the wait
/// early with its message.
pub(super) fn wait_tcp(
    ns: &str,
    addr: SocketAddr,
    timeout: Duration,
    mut give_up: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = connect_in(ns, addr, Duration::from_millis(500));
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{addr} in {ns} not accepting after {timeout:?}: {e}"
                ));
            }
            Err(_) => {}
        }
        if let Some(reason) = give_up() {
            return Err(reason);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

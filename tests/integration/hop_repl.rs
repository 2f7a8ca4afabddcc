//! The REPL through a real terminal: tmux runs `aws-hop`, send-keys types, capture-pane
//! reads the screen, as a person would.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_hop_lab::fixture::aws_hop_bin;

use crate::hop_common::{bastion_dest, trusted_home};
use crate::lab;

/// A tmux session on a private server socket (never the user's tmux).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let socket = format!("aws-hop-test-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "repl",
                "-x",
                "160",
                "-y",
                "50",
                command,
            ])
            .status()
            .expect("tmux is needed (tests/setup.sh installs it)");
        assert!(ok.success(), "tmux new-session failed");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` (literally), then presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.tmux(&["send-keys", "-t", "repl", "Enter"]);
    }

    /// Types `text` literally. tmux reads an argument ending in `;` as a command separator,
    /// so semicolons go as the escaped key `\;`.
    fn type_text(&self, text: &str) {
        for (i, part) in text.split(';').enumerate() {
            if i > 0 {
                self.tmux(&["send-keys", "-t", "repl", "\\;"]);
            }
            if !part.is_empty() {
                self.tmux(&["send-keys", "-t", "repl", "-l", part]);
            }
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "repl"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "repl"])
    }

    /// Waits until the screen shows `needle` `count` times or more.
    fn wait_for_n(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if s.matches(needle).count() >= count {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {needle:?} x{count}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_n(needle, 1, timeout)
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "repl"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn repl_prompt_multiline_completion_ctrl_c_and_forwards() {
    let lab = lab();
    let home = trusted_home(lab);
    let t = Tmux::start(&format!(
        "env HOME={} NO_COLOR=1 {}; sleep 30",
        home.path().display(),
        aws_hop_bin().display()
    ));
    let secs = Duration::from_secs;
    t.wait_for("aws-hop> ", secs(10));

    // A multi-line function: the editor waits for the closing brace.
    t.line("fn add(a, b) {");
    t.line("  a + b");
    t.line("}");
    t.line("add(2, 3)");
    t.wait_for("=> 5", secs(10));

    // Tab completion of a binding.
    t.type_text("let b = bast");
    t.keys(&["Tab"]);
    t.wait_for("let b = bastion", secs(5));
    t.line(&format!("(\"{}\");", bastion_dest(lab)));
    t.line(&format!(
        "let f = b.forward(0, \"{}:3306\");",
        lab.mariadb_host
    ));
    t.wait_for("forwarding 127.0.0.1:", secs(30));
    t.line(".forwards");
    t.wait_for(&format!("-> {}:3306 via ssh", lab.mariadb_host), secs(5));

    // Ctrl-C stops a blocking call and returns to the prompt; the forward stays open.
    t.line("sleep(60)");
    std::thread::sleep(secs(1));
    t.keys(&["C-c"]);
    t.wait_for("interrupted", secs(5));
    let prompts = t.screen().matches("aws-hop> ").count();
    t.line(".forwards");
    let s = t.wait_for_n("aws-hop> ", prompts + 1, secs(5));
    assert_eq!(
        s.matches("(0 connections, 0 active").count(),
        2,
        "the forward must survive Ctrl-C (.forwards lists it before and after):\n{s}"
    );
    assert!(s.contains("interrupted (Ctrl-C)"), "{s}");

    // Ctrl-D leaves, closing the forward.
    t.keys(&["C-d"]);
    t.wait_for("closed 1 forward", secs(10));
    assert!(
        t.alive(),
        "the pane should still be there for the sleep after aws-hop"
    );
}

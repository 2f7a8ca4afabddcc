//! The REPL through a real terminal: tmux runs `aws-hop`, send-keys types, capture-pane
//! reads the screen, as a person would.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_hop_lab::fixture::aws_hop_bin;

use aws_hop_lab::TestHome;

use crate::hop_common::{bastion_dest, trusted_home};
use crate::lab;

/// A tmux session on a private server socket (never the user's tmux).
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` in the pane, under tmux's default shell. The shell shares the terminal's
    /// process group, so a Ctrl-C meant for aws-hop reaches it too: bash waits to see whether
    /// the child died of it, but dash (Debian's /bin/sh) dies at once and takes the pane
    /// with it. `trap : INT` makes every shell wait; the child still gets the default action.
    fn start(name: &str, command: &str) -> Tmux {
        let command = format!("trap : INT; {command}");
        let command = command.as_str();
        let socket = format!("aws-hop-test-{}-{name}", std::process::id());
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
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            // Shown in the assertion that waited for the screen, instead of an empty screen.
            format!(
                "<tmux {args:?} failed ({}): {}>",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        }
    }

    /// Types `text` (literally), then presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.tmux(&["send-keys", "-t", "repl", "Enter"]);
    }

    /// Sends `lines`, each followed by Enter, in one `send-keys`, so that they reach the
    /// terminal together, as a paste does. (No line may end in `;`: see `type_text`.)
    fn paste(&self, lines: &[&str]) {
        let mut args = vec!["send-keys", "-t", "repl"];
        for line in lines {
            assert!(!line.ends_with(';'), "paste() cannot send {line:?}");
            args.extend_from_slice(&[line, "Enter"]);
        }
        self.tmux(&args);
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

/// `aws-hop` (the REPL) in a tmux pane with HOME=`home`; the pane stays 30 s after it exits,
/// so the last screen can still be read. Waits for the first prompt.
fn start_repl(name: &str, home: &std::path::Path, env: &str) -> Tmux {
    let t = Tmux::start(
        name,
        &format!(
            "env HOME={} NO_COLOR=1 {env} {}; sleep 30",
            home.display(),
            aws_hop_bin().display()
        ),
    );
    t.wait_for("aws-hop> ", Duration::from_secs(10));
    t
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
    let t = start_repl("main", home.path(), "");
    let secs = Duration::from_secs;

    // A multi-line function, typed a line at a time: the editor waits for the closing brace.
    t.line("fn add(a, b) {");
    t.line("  a + b");
    t.line("}");
    t.line("add(2, 3)");
    t.wait_for("=> 5", secs(10));

    // The same lines pasted (arriving in one write): none of them may be lost, as the
    // typed-ahead ones were when the editor dropped what it had read past the first line.
    t.paste(&[
        "fn mul(a, b) {",
        "  a * b",
        "}",
        "mul(6, 7)",
        "mul(4, 5)",
        "add(1, 2)",
    ]);
    let s = t.wait_for("=> 3", secs(10));
    let results: Vec<&str> = s.lines().filter(|l| l.starts_with("=> ")).collect();
    assert_eq!(
        results,
        ["=> 5", "=> 42", "=> 20", "=> 3"],
        "every pasted line runs, in order:\n{s}"
    );

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
    t.wait_for("interrupted", secs(15));
    let prompts = t.screen().matches("aws-hop> ").count();
    t.line(".forwards");
    let s = t.wait_for_n("aws-hop> ", prompts + 1, secs(15));
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

#[test]
fn repl_asks_about_an_unknown_host_key_and_records_it_on_yes() {
    let lab = lab();
    let home = TestHome::new(lab); // empty known_hosts
    let t = start_repl("ask", home.path(), "");
    let secs = Duration::from_secs;
    t.line(&format!("let b = bastion(\"{}\");", bastion_dest(lab)));
    t.wait_for(
        "Are you sure you want to continue connecting (yes/no/[fingerprint])?",
        secs(20),
    );
    t.line("yes");
    t.wait_for("recorded host key", secs(10));
    t.line("b.exec(\"echo from-$((6*7))\").stdout");
    t.wait_for("=> \"from-42\\n\"", secs(10));
    assert!(
        home.read_known_hosts()
            .contains(&lab.bastion_ip.to_string()),
        "the key was not recorded:\n{}",
        home.read_known_hosts()
    );
    // Declining refuses, and says so.
    let home2 = TestHome::new(lab);
    let t2 = start_repl("ask-no", home2.path(), "");
    t2.line(&format!("let b = bastion(\"{}\");", bastion_dest(lab)));
    t2.wait_for("(yes/no/[fingerprint])?", secs(20));
    t2.line("no");
    t2.wait_for("was not accepted, not connecting", secs(10));
    assert_eq!(home2.read_known_hosts().trim(), "");
}

#[test]
fn shell_hands_over_the_terminal_with_its_size_and_returns_the_status() {
    let lab = lab();
    let home = trusted_home(lab);
    let t = start_repl("shell", home.path(), "TERM=xterm");
    let secs = Duration::from_secs;
    t.line(&format!("bastion(\"{}\").shell()", bastion_dest(lab)));
    // A remote prompt; the pty has the local window size (160x50 from tmux).
    std::thread::sleep(secs(2));
    t.line("echo remote-$((6*7)) size=$(stty size | tr ' ' x)");
    t.wait_for("remote-42 size=50x160", secs(10));
    // Resizing the local terminal reaches the remote pty.
    t.tmux(&["resize-window", "-t", "repl", "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    t.line("echo size2=$(stty size | tr ' ' x)");
    t.wait_for("size2=30x100", secs(10));
    // Exiting the remote shell returns to the REPL with its status.
    t.line("exit 3");
    t.wait_for("=> 3", secs(10));
    t.line("1 + 1");
    t.wait_for("=> 2", secs(10));
}

/// A word for `sh -c`, quoted when it needs it.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The REPL as the laptop runs it against the lab's AWS side (its hosts file, through a
/// mount namespace, and its environment), in a tmux pane that stays 30 s after it exits.
/// Waits for the first prompt.
fn start_aws_repl(lab: &aws_hop_lab::Lab, home: &TestHome, name: &str) -> Tmux {
    let wrapped = lab.aws.wrap("env");
    let mut words: Vec<String> = std::iter::once(wrapped.get_program())
        .chain(wrapped.get_args())
        .map(|w| sh_quote(&w.to_string_lossy()))
        .collect();
    words.push(format!(
        "HOME={}",
        sh_quote(&home.path().display().to_string())
    ));
    words.push("NO_COLOR=1".into());
    words.push("TERM=xterm".into());
    for (k, v) in lab.aws.client_env() {
        words.push(format!("{k}={}", sh_quote(&v)));
    }
    words.push(sh_quote(&aws_hop_bin().display().to_string()));
    let t = Tmux::start(name, &format!("{}; sleep 30", words.join(" ")));
    t.wait_for("aws-hop> ", Duration::from_secs(10));
    t
}

/// A closed terminal sends the REPL SIGHUP while it waits for a line: its SSM session must
/// be terminated, not left Connected until Session Manager's idle timeout.
#[test]
fn a_closed_terminal_ends_the_repl_and_terminates_its_ssm_session() {
    let lab = aws_hop_lab::Lab::shared_aws(crate::hop_lab_bin());
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = TestHome::new(lab);
    let secs = Duration::from_secs;
    let echo = lab.sink_addr();
    let listener = lab.listen_in(&lab.ns_priv, echo).expect("listen in priv");
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
                if n == 0 || std::io::Write::write_all(&mut conn, &buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let t = start_aws_repl(lab, &home, "hangup");
    t.line(&format!(
        r#"let f = ssm("web-1").forward(0, "{echo}"); `PORT=${{f.local_port}}=`"#
    ));
    let screen = t.wait_for("=> \"PORT=", secs(15));
    let port: u16 = screen
        .split("=> \"PORT=")
        .nth(1)
        .and_then(|rest| rest.split('=').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port on the screen:\n{screen}"));
    // One connection through the forward starts the session.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(secs(20))).unwrap();
    std::io::Write::write_all(&mut c, b"ping\n").unwrap();
    let mut got = [0u8; 5];
    std::io::Read::read_exact(&mut c, &mut got).unwrap();
    assert_eq!(&got, b"ping\n");
    let connected = |stats: &str| stats.matches("\"Status\": \"Connected\"").count();
    assert_eq!(connected(&lab.aws.ssm_stats().unwrap()), 1);
    // The terminal goes away (SIGHUP to the REPL, which sits in the line editor).
    drop(t);
    let deadline = Instant::now() + secs(20);
    loop {
        let stats = lab.aws.ssm_stats().unwrap();
        if stats.contains("\"Status\": \"Terminated\"") && connected(&stats) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session was not terminated after the terminal closed:\n{stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ssm_shell_in_a_terminal_completes_names_runs_commands_follows_resizes_and_ctrl_c() {
    let lab = aws_hop_lab::Lab::shared_aws(crate::hop_lab_bin());
    // SSM tests run one at a time: they share the fake's controls and counters.
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = TestHome::new(lab);
    let secs = Duration::from_secs;
    let t = start_aws_repl(lab, &home, "ssm-shell");

    // Instance names that a lookup returned complete inside `ssm("`.
    t.line("instance(\"web-1\").state");
    t.wait_for("=> \"running\"", secs(15));
    t.type_text("ssm(\"we");
    t.keys(&["Tab"]);
    t.wait_for("ssm(\"web-1", secs(5));
    t.line("\").shell()");
    // The agent's shell runs on web-1, on a pty of the local window's size (160x50).
    std::thread::sleep(secs(2));
    t.line("echo ssm-$((6*7)) size=$(stty size | tr ' ' x) on=$(hostname -I)");
    let screen = t.wait_for("ssm-42 size=50x160", secs(15));
    assert!(
        screen.contains(&lab.instance_ip.to_string()),
        "not web-1:\n{screen}"
    );
    // A resize reaches the remote pty.
    t.tmux(&["resize-window", "-t", "repl", "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_millis(1500));
    t.line("echo size2=$(stty size | tr ' ' x)");
    t.wait_for("size2=30x100", secs(10));
    // Ctrl-C goes to the remote foreground job, not to aws-hop.
    t.line("sleep 30");
    std::thread::sleep(secs(1));
    t.keys(&["C-c"]);
    t.line("echo after-$((40+2))");
    t.wait_for("after-42", secs(10));
    // Leaving the shell ends the session and returns to the REPL; Session Manager reports
    // no exit status for an interactive shell, so shell() gives -1 ("not reported").
    t.line("exit");
    t.wait_for("=> -1", secs(15));
    t.line("1 + 1");
    t.wait_for("=> 2", secs(10));
}

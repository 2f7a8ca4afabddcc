//! The fixture's runner, checked against a fake `aws-hop` (a shell script), so that a
//! failing end-to-end test points at aws-hop and not at the harness. Needs no lab.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_hop_lab::HopCmd;
use aws_hop_lab::fixture::ScratchDir;
use regex::Regex;

/// A fake aws-hop: reports its arguments, HOME, one env var and stdin, then behaves
/// according to the script file it is given (`run FILE` runs FILE with sh).
const FAKE: &str = r#"#!/bin/sh
echo "args: $*"
echo "home: $HOME"
echo "aws: ${AWS_PROFILE:-unset} extra: ${EXTRA:-unset}"
echo "to stderr" >&2
while [ $# -gt 0 ] && [ "$1" != run ]; do shift; done
if [ "$1" = run ]; then shift; file=$1; shift; . "$file"; fi
"#;

fn fake() -> (ScratchDir, PathBuf) {
    let dir = ScratchDir::new("fake-hop").unwrap();
    let path = dir.path().join("aws-hop");
    fs::write(&path, FAKE).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

#[test]
fn run_passes_script_args_env_home_and_stdin() {
    let (_dir, fake) = fake();
    let out = HopCmd::new()
        .program(&fake)
        .args(["--verbose"])
        .script("echo \"script got: $*\"; cat; exit 3")
        .arg_after_script("after")
        .env("EXTRA", "x1")
        .home("/nonexistent/home")
        .stdin("from stdin\n")
        .status(3)
        .stdout_contains("from stdin")
        .stderr_contains("to stderr")
        .run();
    let args = Regex::new(r"args: --verbose run /\S+/script\.rhai after").unwrap();
    assert!(args.is_match(&out.stdout), "{}", out.report());
    out.assert_stdout_contains("home: /nonexistent/home")
        .assert_stdout_contains("extra: x1")
        // The child sees no AWS_* variable unless the test sets one with .env().
        .assert_stdout_contains("aws: unset")
        .assert_stdout_contains("script got: after")
        .assert_failure()
        .assert_status(3);
}

#[test]
#[should_panic(expected = "did not finish within 1s")]
fn run_times_out_with_the_output_so_far() {
    let (_dir, fake) = fake();
    HopCmd::new()
        .program(&fake)
        .script("sleep 30")
        .timeout(1)
        .run();
}

#[test]
fn spawn_waits_for_lines_and_interrupts() {
    let (_dir, fake) = fake();
    let mut hop = HopCmd::new()
        .program(&fake)
        .script(
            "trap 'echo interrupted >&2; exit 130' INT\n\
             echo 'forward 127.0.0.1:4242 -> db'\n\
             while true; do sleep 0.05; done",
        )
        .spawn();
    // Lines from both streams, in order, each returned once.
    assert_eq!(
        hop.wait_for_line("to stderr", Duration::from_secs(5)),
        "to stderr"
    );
    let re = Regex::new(r"forward 127\.0\.0\.1:(\d+)").unwrap();
    let line = hop.wait_for_line(&re, Duration::from_secs(5));
    assert_eq!(&re.captures(&line).unwrap()[1], "4242");
    assert!(hop.is_running());
    let t = Instant::now();
    hop.interrupt();
    let out = hop.wait_exit(Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(3));
    out.assert_status(130).assert_stderr_contains("interrupted");
}

#[test]
fn spawn_takes_stdin_interactively_and_kills_on_drop() {
    let (_dir, fake) = fake();
    let mut hop = HopCmd::new()
        .program(&fake)
        .script("while read line; do echo \"got $line\"; done; echo eof")
        .spawn();
    hop.write_stdin(b"one\n");
    hop.wait_for_line("got one", Duration::from_secs(5));
    hop.write_stdin(b"two\n");
    hop.wait_for_line("got two", Duration::from_secs(5));
    hop.close_stdin();
    hop.wait_for_line("eof", Duration::from_secs(5));
    hop.wait_exit(Duration::from_secs(5)).assert_success();

    let mut hung = HopCmd::new().program(&fake).script("sleep 30").spawn();
    hung.wait_for_line("args:", Duration::from_secs(5));
    let pid = hung.pid();
    drop(hung);
    assert!(
        !aws_hop_lab::lab::alive(pid),
        "the process group was not killed on drop"
    );
}

#[test]
#[should_panic(expected = "the output ended")]
fn wait_for_line_fails_fast_when_the_process_exits() {
    let (_dir, fake) = fake();
    let mut hop = HopCmd::new().program(&fake).script("exit 0").spawn();
    hop.wait_for_line("never printed", Duration::from_secs(30));
}

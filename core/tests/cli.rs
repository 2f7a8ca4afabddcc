//! The `aws-hop` binary without a network: help, `-e`, `check`, exit codes and error format.
//!
//! (These also make `cargo test` build the real binary, which the lab's end-to-end tests in
//! the aws-hop-lab crate drive.)

use std::process::{Command, Output};

/// Runs aws-hop with an empty HOME of its own (removed afterwards).
fn aws_hop(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_aws-hop"))
        .args(args)
        .env("HOME", home.path())
        .env_remove("AWS_HOP_PLUGIN_PATH")
        .output()
        .expect("run aws-hop")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A script file in a temporary directory that goes when the value does.
struct Script {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Script {
    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

fn scratch(name: &str, body: &str) -> Script {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    Script { _dir: dir, path }
}

#[test]
fn help_explains_the_commands() {
    let out = aws_hop(&["--help"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    for needle in [
        "REPL",
        "run",
        "check",
        "-e",
        "bastion(",
        "forward(",
        "known_hosts",
    ] {
        assert!(s.contains(needle), "--help lacks {needle:?}:\n{s}");
    }
}

#[test]
fn eval_prints_the_value() {
    let out = aws_hop(&["-e", "let a = [1, 2]; a.len() * 21"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "42");
}

#[test]
fn run_passes_args_to_the_script() {
    let p = scratch("args.rhai", "print(`${args.len()} ${args[0]} ${args[1]}`);");
    let out = aws_hop(&["run", p.arg(), "prod", "--flag"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2 prod --flag");
}

#[test]
fn runtime_error_inside_a_function_shows_where_and_the_caller() {
    let p = scratch(
        "fn.rhai",
        "fn open_db(port) {\n    forward(port, \"db\", direct())\n}\nopen_db(3307);\n",
    );
    let out = aws_hop(&["run", p.arg()]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("error: 'db' is not host:port"), "{e}");
    assert!(e.contains("fn.rhai:2:5"), "{e}");
    assert!(e.contains("in call to `open_db` at"), "{e}");
    assert!(e.contains("fn.rhai:4:1"), "{e}");
}

#[test]
fn check_passes_good_scripts_and_fails_bad_ones() {
    let good = scratch(
        "good.rhai",
        "let b = bastion(\"ec2-user@bastion\");\nb.forward(3307, \"db:3306\");\nwait();\n",
    );
    let out = aws_hop(&["check", good.arg()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let bad = scratch("bad.rhai", "let b = bastion(\"x\")\nlet c = 1;\n");
    let out = aws_hop(&["check", bad.arg()]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(e.contains("bad.rhai:"), "{e}");
    assert!(e.contains('^'), "{e}");
}

#[test]
fn missing_script_is_named() {
    let out = aws_hop(&["run", "/nonexistent/x.rhai"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read script /nonexistent/x.rhai"));
}

#[test]
fn the_builtin_plugins_load() {
    let out = aws_hop(&["-e", "plugins().map(|p| p.name)"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("direct") && text(&out.stdout).contains("bastion"));
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let p = scratch("global.rhai", "print(\"ok\");");
    for args in [
        vec!["-v", "--region", "eu-west-1", "run", p.arg()],
        vec!["run", "-v", p.arg()],
    ] {
        let out = aws_hop(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "ok");
    }
    let out = aws_hop(&["-e", "1", "check", p.arg()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be combined with a subcommand"));
}

#[test]
fn ssh_config_without_lookup_prints_the_proxy_block() {
    let out = aws_hop(&[
        "--profile",
        "prod",
        "ssh-config",
        "--no-lookup",
        "--via",
        "eice",
        "--user",
        "ubuntu",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("\nHost i-* mi-*\n"), "{s}");
    assert!(
        s.contains(" --profile prod proxy --via eice %h %p\n    User ubuntu\n"),
        "{s}"
    );
}

#[test]
fn ssh_config_writes_strategy_options_and_refuses_a_bastion_route_without_its_bastion() {
    let out = aws_hop(&[
        "ssh-config",
        "--no-lookup",
        "--via",
        "bastion",
        "-o",
        "bastion=ec2-user@bastion.example.com",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(" proxy --via bastion -o bastion=ec2-user@bastion.example.com %h %p\n"),
        "{s}"
    );
    // Without -o bastion=..., the ProxyCommand would fail for every host: refused.
    let out = aws_hop(&["ssh-config", "--no-lookup", "--via", "bastion"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--via bastion needs the bastion: add -o bastion=USER@HOST"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // A misspelt option is refused with the one meant.
    let out = aws_hop(&["ssh-config", "--no-lookup", "-o", "bastoin=b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "unknown option `bastoin` for aws-hop ssh-config -o (did you mean `bastion`?)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn proxy_and_ssh_config_help_name_every_built_in_strategy() {
    for sub in ["proxy", "ssh-config"] {
        let out = aws_hop(&[sub, "--help"]);
        let help = text(&out.stdout);
        for name in ["eice", "ssm", "bastion", "direct"] {
            assert!(
                help.contains(name),
                "`aws-hop {sub} --help` does not name {name}:\n{help}"
            );
        }
    }
    // The same list as the plugins that are built in (`aws-hop -e 'plugins()'`).
    let out = aws_hop(&["-e", "print(plugins().map(|p| p.name))"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"["eice", "ssm", "bastion", "direct"]"#
    );
}

#[test]
fn a_misspelt_proxy_option_is_refused_with_the_one_meant() {
    let out = aws_hop(&["proxy", "-o", "regoin=eu-west-1", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("unknown option `regoin` for aws-hop proxy -o (did you mean `region`?)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn out_of_range_durations_are_errors_naming_the_option_not_panics() {
    for (code, want) in [
        (
            "sleep(1e20)",
            "the argument of sleep() is 100000000000000000000",
        ),
        ("sleep(-1.0)", "the argument of sleep() is -1"),
        ("sleep(0.0 / 0.0)", "the argument of sleep() is NaN"),
        (
            r#"bastion("u@127.0.0.1", #{ timeout: 1e20 })"#,
            "option `timeout` of bastion() must be a number of seconds above 0, at most 86400",
        ),
        (
            r#"eic_endpoint("i-0123456789abcdef0", #{ max_duration: 1e20 })"#,
            "option `max_duration` of eic_endpoint() must be a number of seconds above 0, at most 3600",
        ),
        (
            r#"ssm("i-0123456789abcdef0", #{ timeout: -5 })"#,
            "option `timeout` of ssm() must be a number of seconds above 0",
        ),
    ] {
        let out = aws_hop(&["-e", code]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{code}: {err}");
        assert!(err.contains(want), "{code}: {err}");
        assert!(!err.contains("panicked"), "{code}: {err}");
    }
}

#[test]
fn eic_endpoint_refuses_a_managed_node_and_says_to_use_ssm() {
    let out = aws_hop(&["-e", r#"eic_endpoint("mi-0123456789abcdef0")"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "mi-0123456789abcdef0 is a managed node (hybrid, registered with SSM), not an EC2 instance"
        ) && text(&out.stderr).contains(r#"use ssm("mi-0123456789abcdef0")"#),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn proxy_rejects_a_malformed_option_and_an_unknown_strategy() {
    let out = aws_hop(&["proxy", "-o", "user", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("an option is key=value"));
    let out = aws_hop(&["proxy", "--via", "bastoin", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no strategy plugin named `bastoin` (did you mean `bastion`?)"),
        "{}",
        text(&out.stderr)
    );
}

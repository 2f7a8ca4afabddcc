//! Bad input and failures: each gives a clear message naming the cause and the fix, and
//! leaves everything else running.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use aws_hop_lab::fixture::ScratchDir;
use aws_hop_lab::fixture::TestServer;
use aws_hop_lab::fixture::clients::{mariadb_query, psql_query};
use aws_hop_lab::serve::ServeMode;
use aws_hop_lab::serve::client::greeting;
use aws_hop_lab::{HopCmd, OwnedLab, TestHome};

use crate::hop_common::{
    bastion_dest, interrupt_and_expect_clean_exit, ready_ports, trusted_home, write_file,
};
use crate::{hop_lab_bin, lab};

#[test]
fn syntax_error_exits_2_with_file_line_col_and_caret() {
    let out = HopCmd::new()
        .script("let a = 1;\nlet b = bastion(\"x@y\" #{});\n")
        .timeout(10)
        .run();
    out.assert_status(2)
        .assert_stderr_contains("error: syntax error")
        .assert_stderr_contains(".rhai:2:")
        .assert_stderr_contains(" 2 | let b = bastion(\"x@y\" #{});")
        .assert_stderr_contains("^");
}

#[test]
fn unknown_binding_names_the_closest_one() {
    HopCmd::new()
        .script("let b = bastoin(\"ec2-user@bastion\");\n")
        .timeout(10)
        .run()
        .assert_status(1)
        .assert_stderr_contains("unknown function or method: bastoin")
        .assert_stderr_contains("did you mean `bastion`?")
        .assert_stderr_contains(".rhai:1:9");
}

#[test]
fn check_finds_unknown_functions_without_connecting() {
    let dir = ScratchDir::new("check").unwrap();
    let good = write_file(
        &dir,
        "good.rhai",
        "fn db(b) { b.forward(0, \"db:5432\") }\nlet b = bastion(\"nobody@192.0.2.1\");\ndb(b);\nwait();\n",
    );
    let bad = write_file(
        &dir,
        "bad.rhai",
        "let b = bastion(\"x@y\");\nfowrard(3307, \"db:3306\", b);\n",
    );
    HopCmd::new()
        .args(["check"])
        .arg(&good)
        .timeout(10)
        .run()
        .assert_success()
        .assert_stdout_contains("ok:");
    HopCmd::new()
        .args(["check"])
        .arg(&good)
        .arg(&bad)
        .timeout(10)
        .run()
        .assert_status(2)
        .assert_stderr_contains("unknown function `fowrard` (did you mean `forward`?)")
        .assert_stderr_contains("bad.rhai:2:1");
}

#[test]
fn unknown_option_is_named_with_a_suggestion() {
    let lab = lab();
    HopCmd::new()
        .script(format!(
            "bastion(\"{}\", #{{ kee: \"~/.ssh/x.pem\" }});",
            bastion_dest(lab)
        ))
        .timeout(10)
        .run()
        .assert_status(1)
        .assert_stderr_contains("unknown option `kee` for bastion() (did you mean `key`?)");
}

#[test]
fn busy_local_port_is_refused_and_other_forwards_keep_working() {
    let lab = lab();
    let home = trusted_home(lab);
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let script = format!(
        r#"
let b = bastion("{dest}");
let ok = forward(0, "{mhost}:3306", b);
try {{
    forward({busy_port}, "{mhost}:3306", b);
}} catch (e) {{
    print(`BUSY ${{e}}`);
}}
print(`READY ${{ok.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        mhost = lab.mariadb_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let ports = ready_ports(&mut proc);
    let out = proc.merged_output();
    assert!(
        out.contains(&format!("BUSY cannot listen on 127.0.0.1:{busy_port}")),
        "{out}"
    );
    assert!(out.contains("pick another port, or 0"), "{out}");
    assert_eq!(mariadb_query(ports[0], "select 7").unwrap(), "7");
    drop(busy);
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn unreachable_target_fails_that_connection_only() {
    let lab = lab();
    let home = trusted_home(lab);
    // Nothing listens on the target yet: the bastion's connect is refused.
    let target = SocketAddr::from((lab.sink_ip, 9103));
    let script = format!(
        r#"
let f = forward(0, "{target}", bastion("{dest}"));
print(`READY ${{f.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let port = ready_ports(&mut proc)[0];

    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(
        greeting(&s).is_err(),
        "a connection to a dead target must fail"
    );
    proc.wait_for_line("connect failed", Duration::from_secs(10));

    // The forward is still up: once the target listens, the same port works.
    let _server = TestServer::start(lab, &lab.ns_priv, ServeMode::Greet, target).unwrap();
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(greeting(&s).unwrap().starts_with("hello from"));
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn refused_forward_names_allow_tcp_forwarding() {
    let lab = lab();
    let home = trusted_home(lab);
    let script = format!(
        r#"
let b = bastion("{dest}:{port}");
let f = forward(0, "{phost}:5432", b);
print(`READY ${{f.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        port = lab.nofwd_port,
        phost = lab.postgres_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let port = ready_ports(&mut proc)[0];
    assert!(psql_query(port, "select 1").is_err());
    proc.wait_for_line("administratively prohibited", Duration::from_secs(10));
    let out = proc.merged_output();
    assert!(out.contains("AllowTcpForwarding"), "{out}");
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn wrong_key_is_refused_naming_the_keys_tried() {
    let lab = lab();
    let home = TestHome::new(lab);
    home.trust_lab_hosts();
    let other = home.ssh_dir().join("other_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    HopCmd::new()
        .home(home.path())
        .script(format!(
            "bastion(\"{}\", #{{ key: \"{}\" }});",
            bastion_dest(lab),
            other.display()
        ))
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains(&format!(
            "permission denied for {}@{}:22",
            lab.user, lab.bastion_ip
        ))
        .assert_stderr_contains(&format!("key {} (SHA256:", other.display()))
        .assert_stderr_contains("authorized_keys");
}

#[test]
fn bad_plugin_is_reported_and_the_script_still_runs() {
    let dir = ScratchDir::new("plugins").unwrap();
    write_file(
        &dir,
        "broken.rhai",
        "export const name = \"broken\";\nfn applies(t) { true\n",
    );
    write_file(
        &dir,
        "nocontract.rhai",
        "export const name = \"half\";\nexport const summary = \"s\";\nfn applies(t) { true }\n",
    );
    let out = HopCmd::new()
        .env("AWS_HOP_PLUGIN_PATH", dir.path())
        .script("for p in plugins() { print(`PLUGIN ${p.name}`); }")
        .timeout(10)
        .run();
    out.assert_success()
        .assert_stdout_contains("PLUGIN direct")
        .assert_stdout_contains("PLUGIN bastion")
        .assert_stderr_contains("broken.rhai:")
        .assert_stderr_contains("has no `fn open(target, opts)`");
    assert!(
        !out.stdout.contains("PLUGIN broken") && !out.stdout.contains("PLUGIN half"),
        "{}",
        out.report()
    );
}

#[test]
fn bastion_down_gives_a_clear_error_and_forwards_redial_when_it_returns() {
    let lab = OwnedLab::start(hop_lab_bin()).unwrap();
    let home = trusted_home(&lab);
    let script = format!(
        r#"
let f = forward(0, "{mhost}:3306", bastion("{dest}"));
print(`READY ${{f.local_port}}`);
wait();
"#,
        dest = bastion_dest(&lab),
        mhost = lab.mariadb_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let port = ready_ports(&mut proc)[0];
    assert_eq!(mariadb_query(port, "select 1").unwrap(), "1");

    lab.stop_bastion().unwrap();
    proc.wait_for_line("connection lost", Duration::from_mins(1));
    // While it is down: a new script cannot connect, and says why.
    HopCmd::new()
        .home(home.path())
        .script(format!("bastion(\"{}\");", bastion_dest(&lab)))
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains(&format!("cannot connect to {}:22", lab.bastion_ip))
        .assert_stderr_contains("Connection refused");
    // The forward kept its port; once the bastion is back, it re-dials.
    lab.start_bastion().unwrap();
    assert_eq!(mariadb_query(port, "select 2").unwrap(), "2");
    interrupt_and_expect_clean_exit(proc);
}

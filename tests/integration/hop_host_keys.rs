//! Host keys: unknown refused in scripts, accept-new records, a changed key always refused.

use std::process::Command;

use aws_hop_lab::{HopCmd, TestHome};

use crate::hop_common::bastion_dest;
use crate::lab;

/// A script that logs in to the bastion with `opts` and runs a command.
fn login(dest: &str, opts: &str) -> String {
    format!("let b = bastion(\"{dest}\"{opts});\nprint(b.exec(\"echo logged-in\").stdout);\n")
}

#[test]
fn unknown_host_key_is_refused_in_a_script() {
    let lab = lab();
    let home = TestHome::new(lab); // empty known_hosts
    let out = HopCmd::new()
        .home(home.path())
        .script(login(&bastion_dest(lab), ""))
        .timeout(30)
        .run();
    out.assert_status(1)
        .assert_stderr_contains(&format!("host key for {} is not known", lab.bastion_ip))
        .assert_stderr_contains("known_hosts: \"accept-new\"")
        .assert_stderr_contains(".rhai:1:9");
    assert!(!out.stdout.contains("logged-in"), "{}", out.report());
    assert_eq!(
        home.read_known_hosts().trim(),
        "",
        "nothing may be recorded"
    );
}

#[test]
fn accept_new_records_the_key_and_later_runs_trust_it() {
    let lab = lab();
    let home = TestHome::new(lab);
    let dest = bastion_dest(lab);
    HopCmd::new()
        .home(home.path())
        .script(login(&dest, ", #{ known_hosts: \"accept-new\" }"))
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains("logged-in")
        .assert_stderr_contains("recorded host key");
    let recorded = home.read_known_hosts();
    let bastion_key = std::fs::read_to_string(&lab.bastion_host_key).unwrap();
    let key_b64 = bastion_key.split_whitespace().nth(1).unwrap();
    assert!(
        recorded
            .lines()
            .any(|l| l.starts_with(&lab.bastion_ip.to_string()) && l.contains(key_b64)),
        "known_hosts lacks the bastion's key:\n{recorded}"
    );
    // OpenSSH reads what we wrote.
    let found = Command::new("ssh-keygen")
        .args(["-F", &lab.bastion_ip.to_string(), "-f"])
        .arg(home.known_hosts_path())
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "ssh-keygen -F does not find the recorded key"
    );
    // Now strict mode (the default) trusts it.
    HopCmd::new()
        .home(home.path())
        .script(login(&dest, ""))
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains("logged-in");
}

#[test]
fn changed_host_key_is_refused_with_both_fingerprints_and_the_fix() {
    let lab = lab();
    let home = TestHome::new(lab);
    // Record the *instance's* key under the bastion's address: a changed key.
    let wrong = std::fs::read_to_string(&lab.instance_host_key).unwrap();
    let wrong_key: Vec<&str> = wrong.split_whitespace().take(2).collect();
    home.write_known_hosts(&format!(
        "# lab\n{} {}\n",
        lab.bastion_ip,
        wrong_key.join(" ")
    ));
    for opts in ["", ", #{ known_hosts: \"accept-new\" }"] {
        let out = HopCmd::new()
            .home(home.path())
            .script(login(&bastion_dest(lab), opts))
            .timeout(30)
            .run();
        out.assert_status(1)
            .assert_stderr_contains(&format!("host key for {} has CHANGED", lab.bastion_ip))
            .assert_stderr_contains("presented:")
            .assert_stderr_contains("recorded:")
            .assert_stderr_contains(&format!("{}:2", home.known_hosts_path().display()))
            .assert_stderr_contains("ssh-keygen -R");
        assert!(!out.stdout.contains("logged-in"), "{}", out.report());
    }
}

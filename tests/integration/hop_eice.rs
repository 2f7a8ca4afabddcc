//! aws-hop through EC2 Instance Connect Endpoints, against the lab's AWS side: instance
//! lookup by Name tag, endpoint discovery, SendSSHPublicKey with an ephemeral key, SSH over
//! the presigned WebSocket tunnel, a real PostgreSQL query through a forward on it, and the
//! errors a user meets (ambiguous or unknown names, a stopped instance, a wrong port, no
//! credentials).

use aws_hop_lab::fixture::clients::psql_query;
use aws_hop_lab::lab::POSTGRES_MARKER;
use aws_hop_lab::{HopCmd, Lab, TestHome};

use crate::hop_common::{interrupt_and_expect_clean_exit, ready_ports};
use crate::hop_lab_bin;

/// The shared lab, with its AWS side up.
fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// A HOME with no usable SSH key: a login can only succeed with the pushed ephemeral key.
fn keyless_home(lab: &Lab) -> TestHome {
    let home = TestHome::new(lab);
    let _ = std::fs::remove_file(home.key_path());
    home
}

#[test]
fn eice_ssh_logs_in_with_a_pushed_ephemeral_key() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let web = instance("web-1");
print(`INSTANCE ${{web.id}} ${{web.state}} ${{web.private_ip}}`);
let e = eic_endpoint("web-1");
print(`HOP ${{e}}`);
let h = e.ssh("{user}", #{{ known_hosts: "accept-new" }});
let r = h.exec("hostname -I");
print(`IPS ${{r.stdout.trim()}} STATUS ${{r.status}}`);
"#,
        user = lab.user
    );
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(script)
        .timeout(60)
        .run();
    out.assert_success()
        .assert_stdout_contains(&format!(
            "INSTANCE {} running {}",
            ids.get("WEB1_ID"),
            lab.instance_ip
        ))
        .assert_stdout_contains(&format!("via {}", ids.get("EICE_ID")))
        .assert_stdout_contains("STATUS 0");
    assert!(
        out.stdout.contains(&format!("IPS {}", lab.instance_ip))
            || out.stdout.contains(&format!(" {}", lab.instance_ip)),
        "{}",
        out.report()
    );
    // The host key is recorded under the instance id, not the (reusable) private IP.
    let known = home.read_known_hosts();
    assert!(known.contains(ids.get("WEB1_ID")), "known_hosts: {known}");
}

#[test]
fn postgres_answers_through_a_forward_over_eice_and_ssh() {
    let lab = lab();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let h = eic_endpoint("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
let p = h.forward("127.0.0.1:0", "{phost}:5432");
print(`READY ${{p.local_port}}`);
wait();
"#,
        user = lab.user,
        phost = lab.postgres_host,
    );
    let mut proc = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(script)
        .spawn();
    let ports = ready_ports(&mut proc);
    let row = psql_query(
        ports[0],
        "select inet_client_addr(), (select name from whoami)",
    )
    .unwrap();
    // The connection leaves from the instance, in the private subnet: not from the laptop,
    // nor from the endpoint's address. (In the lab the instance shares its namespace with
    // the databases, so PostgreSQL sees that namespace's primary address.)
    let (client, name) = row.split_once('|').unwrap_or_else(|| panic!("row {row:?}"));
    assert_eq!(name, POSTGRES_MARKER);
    let private = [lab.mariadb_ip, lab.postgres_ip, lab.instance_ip].map(|ip| ip.to_string());
    assert!(
        private.iter().any(|ip| ip == client),
        "PostgreSQL must see a client in the private subnet, not {client}"
    );
    assert_eq!(psql_query(ports[0], "select 40 + 2").unwrap(), "42");
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn instance_lookup_errors_name_the_candidates_and_the_state() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let home = keyless_home(lab);
    let run = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .timeout(30)
            .run()
    };
    run(r#"instance("web-*");"#)
        .assert_status(1)
        .assert_stderr_contains("'web-*' matches 2 instances")
        .assert_stderr_contains(ids.get("WEB1_ID"))
        .assert_stderr_contains(ids.get("WEB2_ID"))
        .assert_stderr_contains("stopped");
    run(r#"instance("no-such-host");"#)
        .assert_status(1)
        .assert_stderr_contains("no instance matches Name tag 'no-such-host'")
        .assert_stderr_contains("us-east-1");
    run(r#"eic_endpoint("web-2");"#)
        .assert_status(1)
        .assert_stderr_contains("is stopped")
        .assert_stderr_contains("start-instances");
    run(&format!(
        r#"let i = instance("{ip}"); print(`BYIP ${{i.name}}`);"#,
        ip = lab.instance_ip
    ))
    .assert_success()
    .assert_stdout_contains("BYIP web-1");
}

#[test]
fn eice_refuses_other_ports_and_hosts_with_the_reason() {
    let lab = lab();
    let home = keyless_home(lab);
    let run = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .timeout(30)
            .run()
    };
    run(&format!(
        r#"eic_endpoint("web-1").ssh("{user}", #{{ port: 2222, known_hosts: "accept-new" }});"#,
        user = lab.user
    ))
    .assert_status(1)
    .assert_stderr_contains("ports 22 and 3389");
    run(&format!(
        r#"eic_endpoint("web-1").ssh("{user}@{host}", #{{ known_hosts: "accept-new" }});"#,
        user = lab.user,
        host = lab.postgres_host
    ))
    .assert_status(1)
    .assert_stderr_contains("reaches only its instance");
}

#[test]
fn missing_credentials_and_region_say_what_to_set() {
    let lab = lab();
    let home = keyless_home(lab);
    HopCmd::new()
        .home(home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .script(r#"instance("web-1");"#)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("no AWS credentials")
        .assert_stderr_contains("AWS_ACCESS_KEY_ID");
    HopCmd::new()
        .home(home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .script(r#"instance("web-1");"#)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("cannot choose an AWS region")
        .assert_stderr_contains("AWS_REGION");
}

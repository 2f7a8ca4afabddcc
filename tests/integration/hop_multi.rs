//! Multi-hop: laptop -> bastion -> private instance -> database.

use aws_hop_lab::HopCmd;
use aws_hop_lab::fixture::clients::psql_query;

use crate::hop_common::{bastion_dest, interrupt_and_expect_clean_exit, ready_ports, trusted_home};
use crate::lab;

#[test]
fn exec_and_forward_through_bastion_then_instance() {
    let lab = lab();
    let home = trusted_home(lab);
    // The instance's name resolves only inside the VPC, so the second hop's address is
    // resolved on the bastion: a user writes the private DNS name.
    let script = format!(
        r#"
let i = bastion("{dest}").ssh("{user}@{ihost}");
let r = i.exec("ip -4 -o addr show dev eth0");
print(`STATUS ${{r.status}}`);
print(r.stdout);
let f = i.forward(0, "{phost}:5432");
print(`READY ${{f.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        user = lab.user,
        ihost = lab.instance_host,
        phost = lab.postgres_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let ports = ready_ports(&mut proc);
    let out = proc.merged_output();
    assert!(out.contains("STATUS 0"), "{out}");
    assert!(
        out.contains(&format!("{}/24", lab.instance_ip)),
        "exec did not run on the instance:\n{out}"
    );
    // The connection leaves from the private subnet (the instance, the last hop), not from
    // the bastion. (In the lab the instance shares its namespace with the databases, so
    // PostgreSQL sees that namespace's primary address.)
    let client = psql_query(ports[0], "select inet_client_addr()").unwrap();
    let private = [
        lab.mariadb_ip,
        lab.postgres_ip,
        lab.instance_ip,
        lab.sink_ip,
    ]
    .map(|ip| ip.to_string());
    assert!(
        private.contains(&client) && client != lab.bastion_priv_ip.to_string(),
        "the database saw {client}, not an address of the private subnet"
    );
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn proxy_jump_from_ssh_config_is_followed() {
    let lab = lab();
    let home = trusted_home(lab);
    home.write_ssh_config(&format!(
        "Host lab-bastion\n  HostName {}\n  User {}\n\nHost lab-instance\n  HostName {}\n  User {}\n  ProxyJump lab-bastion\n",
        lab.bastion_ip, lab.user, lab.instance_host, lab.user
    ));
    HopCmd::new()
        .home(home.path())
        .script(r#"print(bastion("lab-instance").exec("hostname -I").stdout);"#)
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains(&lab.instance_ip.to_string());
}

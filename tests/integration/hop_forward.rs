//! aws-hop forwards through the bastion: real database clients, real answers.

use aws_hop_lab::HopCmd;
use aws_hop_lab::fixture::clients::{mariadb_query, psql_query};
use aws_hop_lab::lab::{MARIADB_MARKER, POSTGRES_MARKER};

use crate::hop_common::{bastion_dest, interrupt_and_expect_clean_exit, ready_ports, trusted_home};
use crate::lab;

#[test]
fn databases_answer_through_forwards_via_the_bastion() {
    let lab = lab();
    let home = trusted_home(lab);
    let script = format!(
        r#"
let b = bastion("{dest}");
let m = forward(0, "{mhost}:3306", b);
let p = b.forward("127.0.0.1:0", "{phost}:5432");
print(`READY ${{m.local_port}} ${{p.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        mhost = lab.mariadb_host,
        phost = lab.postgres_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let ports = ready_ports(&mut proc);

    let row = mariadb_query(ports[0], "select name, @@bind_address from whoami").unwrap();
    assert_eq!(row, format!("{MARIADB_MARKER}\t{}", lab.mariadb_ip));
    let row = psql_query(
        ports[1],
        "select inet_client_addr(), (select name from whoami)",
    )
    .unwrap();
    assert_eq!(
        row,
        format!("{}|{POSTGRES_MARKER}", lab.bastion_priv_ip),
        "PostgreSQL must see the bastion's private address as the client"
    );
    // A second connection through the same forward, after the first closed.
    assert_eq!(mariadb_query(ports[0], "select 40 + 2").unwrap(), "42");
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn forward_stats_count_connections_and_bytes() {
    let lab = lab();
    let home = trusted_home(lab);
    let script = format!(
        r#"
let b = bastion("{dest}");
let f = forward(0, "{phost}:5432", b);
print(`READY ${{f.local_port}}`);
while f.stats().connections < 1 || f.stats().active > 0 {{ sleep(0.05); }}
let s = f.stats();
print(`STATS ${{s.connections}} ${{s.active}} ${{s.bytes_in > 100}} ${{s.bytes_out > 100}} ${{s.failed}}`);
print(f);
f.close();
print(`OPEN ${{f.is_open}} ${{forwards().len()}}`);
"#,
        dest = bastion_dest(lab),
        phost = lab.postgres_host,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let ports = ready_ports(&mut proc);
    psql_query(ports[0], "select 1").unwrap();
    let out = proc.wait_exit(std::time::Duration::from_secs(20));
    out.assert_success()
        .assert_stdout_contains("STATS 1 0 true true 0")
        .assert_stdout_contains(&format!(
            "forward 127.0.0.1:{} -> {}:5432 via ssh",
            ports[0], lab.postgres_host
        ))
        .assert_stdout_contains("OPEN false 0");
}

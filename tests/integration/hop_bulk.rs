//! Nothing lost: 1 GiB each way arrives byte-identical, and 200 concurrent connections
//! through one forward each get their own bytes back.

use std::net::{SocketAddr, TcpStream};
use std::thread;

use aws_hop_lab::fixture::TestServer;
use aws_hop_lab::serve::ServeMode;
use aws_hop_lab::serve::client::{echo, sink_send, source_fetch};
use aws_hop_lab::{HopCmd, pattern};

use crate::hop_common::{bastion_dest, interrupt_and_expect_clean_exit, ready_ports, trusted_home};
use crate::lab;

const GIB: u64 = 1 << 30;

#[test]
fn one_gib_each_way_arrives_byte_identical() {
    let lab = lab();
    let home = trusted_home(lab);
    let sink = TestServer::start(
        lab,
        &lab.ns_priv,
        ServeMode::Sink,
        SocketAddr::from((lab.sink_ip, 9100)),
    )
    .unwrap();
    let source = TestServer::start(
        lab,
        &lab.ns_priv,
        ServeMode::Source,
        SocketAddr::from((lab.sink_ip, 9101)),
    )
    .unwrap();
    let script = format!(
        r#"
let b = bastion("{dest}");
let up = forward(0, "{sink}", b);
let down = forward(0, "{source}", b);
print(`READY ${{up.local_port}} ${{down.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        sink = sink.addr,
        source = source.addr,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let ports = ready_ports(&mut proc);

    let up = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let reply = sink_send(&up, GIB).unwrap();
    assert_eq!(reply.bytes, GIB, "the sink did not get every byte");
    assert_eq!(
        reply.sha256,
        pattern::sha256_hex_of_pattern(GIB),
        "upload corrupted"
    );

    let down = TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    // source_fetch checks every byte against the pattern and fails on the first wrong one.
    assert_eq!(source_fetch(&down, GIB).unwrap(), GIB, "download truncated");
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn two_hundred_concurrent_connections_get_their_own_bytes() {
    let lab = lab();
    let home = trusted_home(lab);
    let server = TestServer::start(
        lab,
        &lab.ns_priv,
        ServeMode::Echo,
        SocketAddr::from((lab.sink_ip, 9102)),
    )
    .unwrap();
    let script = format!(
        r#"
let f = forward(0, "{target}", bastion("{dest}"));
print(`READY ${{f.local_port}}`);
wait();
"#,
        dest = bastion_dest(lab),
        target = server.addr,
    );
    let mut proc = HopCmd::new().home(home.path()).script(script).spawn();
    let port = ready_ports(&mut proc)[0];

    let handles: Vec<_> = (0..200u32)
        .map(|i| {
            thread::spawn(move || {
                // 64 KiB unique to this connection.
                let payload: Vec<u8> = (0..65_536u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) as u8)
                    .collect();
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let back = echo(&s, &payload).unwrap();
                assert!(
                    back == payload,
                    "connection {i} got {} bytes, not its own 65536",
                    back.len()
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    interrupt_and_expect_clean_exit(proc);
}

//! The `hop-lab serve` test servers answer as documented: on loopback, and in the private
//! subnet reached from the bastion.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use aws_hop_lab::ServeMode;
use aws_hop_lab::fixture::TestServer;
use aws_hop_lab::pattern;
use aws_hop_lab::serve::client;

use crate::lab;

/// A server on 127.0.0.1 in the root namespace: no lab needed.
fn loopback(mode: ServeMode) -> TestServer {
    TestServer::start_local(mode, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

#[test]
fn echo_returns_every_byte() {
    let server = loopback(ServeMode::Echo);
    let stream = TcpStream::connect(server.addr).unwrap();
    let mut data = vec![0u8; 3 << 20];
    pattern::fill(0, &mut data);
    let back = client::echo(&stream, &data).unwrap();
    assert!(
        back == data,
        "echoed {} bytes, sent {}",
        back.len(),
        data.len()
    );
}

#[test]
fn sink_counts_and_hashes() {
    let server = loopback(ServeMode::Sink);
    let n = (10 << 20) + 123;
    let reply = client::sink_send(&TcpStream::connect(server.addr).unwrap(), n).unwrap();
    assert_eq!(reply.bytes, n);
    assert_eq!(reply.sha256, pattern::sha256_hex_of_pattern(n));
    // An empty upload is answered too.
    let empty = client::sink_send(&TcpStream::connect(server.addr).unwrap(), 0).unwrap();
    assert_eq!(
        (empty.bytes, empty.sha256.as_str()),
        (0, pattern::sha256_hex(b"").as_str())
    );
}

#[test]
fn source_sends_the_pattern_fast() {
    let server = loopback(ServeMode::Source);
    let n = 512 << 20;
    let t = Instant::now();
    let got = client::source_fetch(&TcpStream::connect(server.addr).unwrap(), n).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, n);
    // Throughput is recorded, not asserted tightly: the machine may be loaded.
    eprintln!(
        "source: {} MiB in {secs:.3} s = {:.0} MB/s (checked)",
        n >> 20,
        n as f64 / secs / 1e6
    );
    let odd = client::source_fetch(&TcpStream::connect(server.addr).unwrap(), 1_000_003).unwrap();
    assert_eq!(odd, 1_000_003);
}

#[test]
fn greet_speaks_first_then_echoes() {
    let server = loopback(ServeMode::Greet);
    let stream = TcpStream::connect(server.addr).unwrap();
    assert_eq!(
        client::greeting(&stream).unwrap(),
        format!("hello from {}", server.addr)
    );
    assert_eq!(client::echo(&stream, b"ping\n").unwrap(), b"ping\n");
}

#[test]
fn servers_in_the_private_subnet_answer_the_bastion() {
    let lab = lab();
    let connect = |addr| {
        lab.connect_in(&lab.ns_pub, addr, Duration::from_secs(3))
            .unwrap()
    };

    let sink = TestServer::start(lab, &lab.ns_priv, ServeMode::Sink, lab.sink_addr()).unwrap();
    let reply = client::sink_send(&connect(sink.addr), 1 << 20).unwrap();
    assert_eq!(
        (reply.bytes, reply.sha256),
        (1 << 20, pattern::sha256_hex_of_pattern(1 << 20))
    );

    let greet = TestServer::start(lab, &lab.ns_priv, ServeMode::Greet, lab.sink_addr()).unwrap();
    assert_eq!(
        client::greeting(&connect(greet.addr)).unwrap(),
        format!("hello from {}", greet.addr)
    );

    // An in-process server in the private subnet works the same way.
    let listener = lab.listen_in(&lab.ns_priv, lab.sink_addr()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || aws_hop_lab::serve::serve(ServeMode::Echo, &listener));
    assert_eq!(
        client::echo(&connect(addr), b"from the bastion").unwrap(),
        b"from the bastion"
    );
}

"""The fake SSM agent of one lab instance (web-1), written from protocols/ssm.md only.

    ssm_agent.py CONFIG.json INSTANCE_ID INSTANCE_IP

It runs inside the private subnet's namespace, as the agent runs on the instance: every
connection it makes (to the gateway, to port-forwarding destinations) is bound to the
instance's private IP, so the destination sees the instance as its client; names resolve
through the VPC's hosts file; the shell runs there, as the lab user (there is no
ssm-user). `localhost` means the instance itself (INSTANCE_IP): the namespace is shared
with the lab's other private hosts.

It dials the gateway (ssm_gateway.py) on the aws namespace's subnet address, keeps a
control connection open (that is "Online"), and opens one more connection per session
when the gateway says `start`. Per session (ssm.md sections 3-6):

- reliability: sequence numbers from 0, SYN on seq 0, acks with Flags 3, duplicates
  re-acked, out-of-order frames acked and buffered, no ack while the handler is not ready
  (the pty before it exists, a basic-mode destination being dialled), the head of the
  unacked list resent after the RTO (Jacobson/Karels, 100 ms tick, 1 s cap), sending and
  resending stop on pause_publication until start_publication or any incoming data/ack;
- handshake for Port sessions and KMS shells (SessionType with the document properties,
  KMSEncryption when the gateway asks for it), 15 s limits, ClientVersion thresholds
  1.1.70 (mux) and 1.2.331.0 (smux keepalive off above it);
- Port: smux v1 server (SYN -> dial -> copy; ConnectToPortError flag + FIN when the dial
  fails) or basic mode (one destination, DisconnectToPort closes it, next data re-dials;
  SSH ends with the destination);
- Standard_Stream: /bin/sh on a real pty; Size resizes it; exit -> Terminating;
- Flag TerminateSession ends any session; channel_closed from the gateway too.
"""

import base64
import fcntl
import ipaddress
import json
import os
import pty
import pwd
import secrets
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import OrderedDict

import ssm_wire as w
from ssm_wire import LINK_PORT

AGENT_VERSION = "3.3.1142.0"
MUX_MIN_CLIENT = "1.1.70"
KEEPALIVE_OFF_ABOVE = "1.2.331.0"
HANDSHAKE_TIMEOUT = 15
CHUNK = 1024  # StreamDataPayloadSize
RESEND_TICK = 0.1
RTO_CAP = 1.0
OUT_WINDOW = 4000  # the lab's own back-pressure (the real agent buffers up to 100 000)
IN_BUFFER = 100000
DIAL_TIMEOUT = 10
DENIED_IPS = {"169.254.169.254", "169.254.169.253", "169.254.169.123", "169.254.170.2", "fd00:ec2::254", "fd00:ec2::253", "fd00:ec2::123"}


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class NotReady(Exception):
    pass


class Agent:
    def __init__(self, config, instance_id, instance_ip):
        self.config = config
        self.instance_id = instance_id
        self.instance_ip = instance_ip
        net = config["net"]
        self.gateway = (config.get("subnet_ip", f"{net}.1.2"), LINK_PORT)
        self.vpc = ipaddress.ip_network(f"{net}.0.0/16")
        self.user = config["users"][0]

    def dial(self, host, port, timeout=DIAL_TIMEOUT):
        """A TCP connection from the instance's address."""
        return socket.create_connection((host, port), timeout=timeout, source_address=(self.instance_ip, 0))

    def run(self):
        while True:
            try:
                sock = self.dial(*self.gateway, timeout=5)
                sock.settimeout(None)
                lock = threading.Lock()
                w.link_send(sock, lock, b"J", {"agent": self.instance_id, "agent_version": AGENT_VERSION, "ip": self.instance_ip, "hostname": socket.gethostname()})
                log(f"connected to the gateway {self.gateway[0]}:{self.gateway[1]}")
                while True:
                    item = w.link_recv(sock)
                    if item is None:
                        break
                    kind, msg = item
                    if kind == b"J" and "start" in msg:
                        threading.Thread(target=Session(self, msg).run, daemon=True).start()
                sock.close()
                log("the gateway closed the control connection")
            except OSError as err:
                log(f"gateway {self.gateway}: {err}")
            time.sleep(1)


class Session:
    def __init__(self, agent, start):
        self.agent = agent
        self.sid = start["start"]
        self.document = start["document"]
        self.session_type = start["session_type"]
        self.properties = start.get("properties") or {}
        self.kms_key_id = start.get("kms_key_id") or ""
        self.late_handshake_ack = bool(start.get("late_handshake_ack"))
        self.complete_sent = threading.Event()
        self.link = None
        self.link_lock = threading.Lock()
        self.cond = threading.Condition()
        self.send_order = threading.Lock()
        self.out_seq = 0
        self.expected = 0
        self.out_buf = OrderedDict()  # seq -> [raw, last_sent]
        self.in_buf = {}
        self.rtt, self.rttvar, self.rto = 0.1, 0.0, 0.2
        self.paused = False
        self.done = threading.Event()
        self.handshake_needed = self.session_type == "Port" or bool(self.kms_key_id)
        self.handshake_complete = threading.Event()
        self.handshake_response = None
        self.handshake_event = threading.Event()
        self.challenge_response = None
        self.challenge_event = threading.Event()
        self.plugin = None
        self.client_version = None
        self.ended = None

    def log(self, message):
        log(f"{self.sid}: {message}")

    # -- link -------------------------------------------------------------------------

    def note(self, **info):
        try:
            w.link_send(self.link, self.link_lock, b"J", info)
        except OSError:
            pass

    def raw_send(self, raw):
        try:
            w.link_send(self.link, self.link_lock, b"B", raw)
        except OSError:
            pass

    def run(self):
        try:
            self.link = self.agent.dial(*self.agent.gateway, timeout=5)
            self.link.settimeout(None)
            self.link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            w.link_send(self.link, self.link_lock, b"J", {"session": self.sid})
        except OSError as err:
            self.log(f"cannot open the data channel: {err}")
            return
        self.log(f"start {self.document} {self.session_type} {self.properties} kms={bool(self.kms_key_id)}")
        threading.Thread(target=self.reader, daemon=True).start()
        threading.Thread(target=self.resender, daemon=True).start()
        self.raw_send(w.encode(w.AGENT_SESSION_STATE, 0, 0, 0, json.dumps({"SchemaVersion": 1, "SessionState": "Connected", "SessionId": self.sid})))
        try:
            complete = None
            if self.handshake_needed:
                complete = self.handshake()
                if complete is None:
                    return
            if self.session_type == "Port":
                if self.properties.get("type") == "LocalPortForwarding" and w.version_ge(self.client_version, MUX_MIN_CLIENT):
                    self.plugin = MuxPlugin(self, keepalive=not w.version_gt(self.client_version, KEEPALIVE_OFF_ABOVE))
                else:
                    self.plugin = BasicPlugin(self)
            else:
                self.plugin = ShellPlugin(self)
            self.note(mode=self.plugin.mode, client_version=self.client_version)
            # The real agent (datachannel.go, PerformHandshake) sends HandshakeComplete and
            # then marks the handshake complete; stream data handled in between is acked and
            # dropped. In Go that gap is microseconds, far below the round trip through the
            # service that a client needs to answer HandshakeComplete. In this Python fake a
            # thread switch under load stretched it past the lab's sub-millisecond round trip,
            # and ssh's banner, sent on HandshakeComplete, vanished. So the fake is ready
            # (handshake marked complete, a port plugin started) before it says so; what a
            # client can observe stays the same. A shell starts after, as its output must
            # not precede HandshakeComplete.
            if self.session_type == "Port":
                self.plugin.start()
            self.handshake_complete.set()
            if complete is not None:
                self.send_data(w.P_HANDSHAKE_COMPLETE, complete)
                self.complete_sent.set()
                self.log(f"handshake complete: ClientVersion={self.client_version}")
            if self.session_type != "Port":
                self.plugin.start()
            self.done.wait()
        finally:
            self.done.set()
            if self.plugin:
                self.plugin.stop()
            time.sleep(0.5)
            try:
                self.link.close()
            except OSError:
                pass
            self.log(f"over ({self.ended})")

    def finish(self, why, output=""):
        """The session ends on the agent's side: flush (up to 2 s), then Terminating."""
        if self.done.is_set() or self.ended:
            return
        self.ended = why
        self.log(f"finishing: {why} {output!r}")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with self.cond:
                if not self.out_buf:
                    break
            time.sleep(0.05)
        self.note(ended=why, output=output)
        self.raw_send(w.encode(w.AGENT_SESSION_STATE, 0, 0, 0, json.dumps({"SchemaVersion": 1, "SessionState": "Terminating", "SessionId": self.sid})))
        self.done.set()

    # -- reliability -------------------------------------------------------------------

    def send_data(self, payload_type, payload):
        with self.send_order:
            with self.cond:
                while (self.paused or len(self.out_buf) >= OUT_WINDOW) and not self.done.is_set():
                    self.cond.wait(0.1)
                if self.done.is_set():
                    return
                seq = self.out_seq
                self.out_seq += 1
                raw = w.encode(w.OUTPUT, seq, w.SYN if seq == 0 else 0, payload_type, payload)
                self.out_buf[seq] = [raw, time.monotonic()]
            self.raw_send(raw)

    def send_stream(self, data):
        for i in range(0, len(data), CHUNK):
            self.send_data(w.P_OUTPUT, data[i : i + CHUNK])

    def resender(self):
        while not self.done.is_set():
            time.sleep(RESEND_TICK)
            with self.cond:
                if self.paused or not self.out_buf:
                    continue
                seq, entry = next(iter(self.out_buf.items()))
                now = time.monotonic()
                if now - entry[1] <= self.rto:
                    continue
                entry[1] = now
                raw = entry[0]
            self.raw_send(raw)

    def on_ack(self, m):
        try:
            seq = int(m.json()["AcknowledgedMessageSequenceNumber"])
        except (ValueError, KeyError, TypeError):
            return
        with self.cond:
            entry = self.out_buf.pop(seq, None)
            if entry is not None:
                sample = time.monotonic() - entry[1]
                self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.rtt - sample)
                self.rtt = 0.875 * self.rtt + 0.125 * sample
                self.rto = min(RTO_CAP, self.rtt + max(0.010, 4 * self.rttvar))
            self.paused = False
            self.cond.notify_all()

    def reader(self):
        try:
            while True:
                item = w.link_recv(self.link)
                if item is None:
                    break
                kind, data = item
                if kind != b"B":
                    continue
                try:
                    m = w.decode(data)
                except w.DecodeError as err:
                    self.log(f"bad frame: {err}")
                    continue
                if m.message_type == w.ACK:
                    self.on_ack(m)
                elif m.message_type == w.INPUT:
                    self.on_input(m)
                elif m.message_type == w.CHANNEL_CLOSED:
                    self.log("channel_closed from the gateway")
                    self.ended = self.ended or "channel_closed"
                    self.done.set()
                elif m.message_type == w.PAUSE_PUBLICATION:
                    with self.cond:
                        self.paused = True
                elif m.message_type == w.START_PUBLICATION:
                    with self.cond:
                        self.paused = False
                        self.cond.notify_all()
        except (OSError, ValueError) as err:
            self.log(f"link: {err!r}")
        self.ended = self.ended or "link closed"
        self.done.set()

    def on_input(self, m):
        with self.cond:
            self.paused = False
            self.cond.notify_all()
        if m.seq < self.expected:
            return self.raw_send(w.ack_for(m))  # a duplicate: ack it again
        if m.seq > self.expected:
            if len(self.in_buf) < IN_BUFFER:
                self.in_buf[m.seq] = m
                self.raw_send(w.ack_for(m))
            return
        # The real agent (agent/session/datachannel/datachannel.go, handleStreamDataMessage)
        # processes an in-order message, then acks it. For a HandshakeResponse, processing
        # only hands a value to PerformHandshake over an unbuffered channel; that goroutine
        # still has to wake, build HandshakeComplete and send it, while the reader goes
        # straight on to the ack. So the ack leaves first in practice, and a client sees
        # HandshakeComplete before it only when the scheduler lets that goroutine win the
        # race: the fake acks first, and offers the other order as a fault
        # (`late_handshake_ack`). Other payloads are acked after handling, as the agent does,
        # since a handler that is not ready (NotReady) must leave them unacked.
        ack_first = m.payload_type == w.P_HANDSHAKE_RESPONSE and not self.late_handshake_ack
        if ack_first:
            self.raw_send(w.ack_for(m))
        try:
            self.handle(m)
        except NotReady:
            return  # no ack, no advance: the client resends
        if not ack_first:
            if m.payload_type == w.P_HANDSHAKE_RESPONSE:
                # The fault, made certain: the ack goes out after HandshakeComplete.
                self.complete_sent.wait(HANDSHAKE_TIMEOUT)
            self.raw_send(w.ack_for(m))
        self.expected += 1
        while self.expected in self.in_buf:
            nxt = self.in_buf.pop(self.expected)
            try:
                self.handle(nxt)
            except NotReady:
                self.in_buf[nxt.seq] = nxt
                return
            self.expected += 1

    def handle(self, m):
        pt = m.payload_type
        if pt == w.P_HANDSHAKE_RESPONSE:
            self.handshake_response = m.payload
            self.handshake_event.set()
            return
        if pt == w.P_ENC_CHALLENGE_RESPONSE:
            self.challenge_response = m.payload
            self.challenge_event.set()
            return
        if not self.handshake_complete.is_set():
            if self.handshake_needed:
                return  # acked and discarded until the handshake completes
            raise NotReady()
        if pt == w.P_FLAG and len(m.payload) >= 4:
            (flag,) = struct.unpack(">I", m.payload[:4])
            if flag == w.FLAG_TERMINATE_SESSION:
                self.log("TerminateSession flag")
                threading.Thread(target=self.finish, args=("flag",), daemon=True).start()
                return
            if self.plugin is None:
                raise NotReady()
            return self.plugin.flag(flag)
        if self.plugin is None or not self.plugin.ready:
            raise NotReady()
        if pt == w.P_SIZE:
            return self.plugin.size(m.payload)
        if pt == w.P_OUTPUT:
            return self.plugin.data(m.payload)

    # -- handshake ---------------------------------------------------------------------

    def handshake(self):
        """Runs the handshake up to HandshakeComplete: returns that message's payload for
        `run` to send, or None when the session was finished instead."""
        start = time.monotonic()
        actions = [{"ActionType": "SessionType", "ActionParameters": {"SessionType": self.session_type, "Properties": self.properties}}]
        challenge = None
        if self.kms_key_id:
            challenge = base64.b64encode(secrets.token_bytes(16)).decode()
            actions.append({"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": self.kms_key_id, "Challenge": challenge}})
        self.send_data(w.P_HANDSHAKE_REQUEST, json.dumps({"AgentVersion": AGENT_VERSION, "RequestedClientActions": actions}).encode())
        if not self.handshake_event.wait(HANDSHAKE_TIMEOUT):
            self.finish("handshake-timeout", "Handshake timed out. Please ensure that you have the latest version of the session manager plugin.")
            return None
        try:
            response = json.loads(self.handshake_response.decode())
        except ValueError:
            self.finish("handshake-failed", "Handshake response is not valid JSON.")
            return None
        self.client_version = response.get("ClientVersion")
        processed = response.get("ProcessedClientActions") or []
        by_type = {a.get("ActionType"): a for a in processed}
        for action in actions:
            got = by_type.get(action["ActionType"])
            if got is None or got.get("ActionStatus") != 1:
                why = (got or {}).get("Error") or "not processed"
                self.finish("handshake-failed", f"{action['ActionType']} failed on client with status {(got or {}).get('ActionStatus')} error: {why}")
                return None
        message = ""
        if self.kms_key_id:
            # The lab cannot check the data key (no KMS Decrypt on the instance): it asks
            # for the challenge and accepts any answer, and does not encrypt the stream.
            self.send_data(w.P_ENC_CHALLENGE_REQUEST, json.dumps({"Challenge": base64.b64encode(secrets.token_bytes(64)).decode()}).encode())
            if not self.challenge_event.wait(HANDSHAKE_TIMEOUT):
                self.finish("handshake-timeout", "Timed out waiting for the encryption challenge response.")
                return None
            message = "This session is encrypted using AWS KMS."
        took = int((time.monotonic() - start) * 1e9)
        return json.dumps({"HandshakeTimeToComplete": took, "CustomerMessage": message}).encode()

    # -- destinations -------------------------------------------------------------------

    def destination(self):
        host = self.properties.get("host") or "localhost"
        port = int(self.properties.get("portNumber") or 0)
        return host, port

    def dial_destination(self):
        """Resolves and dials the destination as the agent does (denied addresses
        refused). Returns a socket; raises OSError with the reason."""
        host, port = self.destination()
        if host in ("localhost", "127.0.0.1", "::1"):
            host = self.agent.instance_ip
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        last = None
        for *_, addr in infos:
            ip = ipaddress.ip_address(addr[0])
            vpc = self.agent.vpc
            reserved = {vpc.network_address + i for i in range(4)} | {vpc.broadcast_address}
            if str(ip) in DENIED_IPS or ip in reserved:
                last = OSError(f"dial tcp {ip}:{port}: the destination address is not allowed")
                continue
            try:
                sock = self.agent.dial(str(ip), port)
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as err:
                last = OSError(f"dial tcp {ip}:{port}: {err.strerror or err}")
        raise last or OSError(f"no address for {host}")


def _shut(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class MuxPlugin:
    """smux v1 server on the data stream (ssm.md section 5, multiplexed mode)."""

    mode = "mux"

    def __init__(self, session, keepalive):
        self.s = session
        self.keepalive = keepalive
        self.parser = w.SmuxParser()
        self.streams = {}  # id -> {"sock", "pending", "lock"}
        self.write_lock = threading.Lock()
        self.ready = False
        self.last_recv = time.monotonic()

    def start(self):
        self.ready = True
        if self.keepalive:
            threading.Thread(target=self.keepalive_loop, daemon=True).start()

    def stop(self):
        for st in list(self.streams.values()):
            _shut(st["sock"])
        self.streams.clear()

    def frame(self, cmd, sid, data=b""):
        with self.write_lock:
            self.s.send_stream(w.smux_frame(cmd, sid, data))

    def keepalive_loop(self):
        while not self.s.done.is_set():
            time.sleep(10)
            if time.monotonic() - self.last_recv > 30:
                self.s.finish("smux-keepalive-timeout")
                return
            self.frame(w.CMD_NOP, 0)

    def flag(self, flag):
        pass  # DisconnectToPort is not used in mux mode

    def size(self, payload):
        pass

    def data(self, payload):
        self.last_recv = time.monotonic()
        for ver, cmd, sid, body in self.parser.feed(payload):
            if ver != w.SMUX_VERSION:
                self.s.log(f"smux: version {ver} frame: invalid protocol")
                threading.Thread(target=self.s.finish, args=("smux-invalid-protocol",), daemon=True).start()
                return
            if cmd == w.CMD_SYN:
                st = {"sock": None, "pending": [], "lock": threading.Lock(), "closed": False}
                self.streams[sid] = st
                threading.Thread(target=self.open_stream, args=(sid, st), daemon=True).start()
            elif cmd == w.CMD_PSH:
                st = self.streams.get(sid)
                if st is None:
                    continue
                with st["lock"]:
                    if st["sock"] is None:
                        st["pending"].append(body)
                        continue
                    sock = st["sock"]
                try:
                    sock.sendall(body)
                except OSError:
                    self.close_stream(sid, send_fin=True)
            elif cmd == w.CMD_FIN:
                self.close_stream(sid, send_fin=False)
            # NOP: only counts as traffic

    def open_stream(self, sid, st):
        try:
            sock = self.s.dial_destination()
        except OSError as err:
            self.s.log(f"smux stream {sid}: {err}")
            self.s.send_data(w.P_FLAG, w.flag_payload(w.FLAG_CONNECT_TO_PORT_ERROR))
            self.frame(w.CMD_FIN, sid)
            self.streams.pop(sid, None)
            return
        with st["lock"]:
            if st["closed"]:
                return _shut(sock)
            try:
                for chunk in st["pending"]:
                    sock.sendall(chunk)
            except OSError:
                pass
            st["pending"] = []
            st["sock"] = sock
        self.s.log(f"smux stream {sid}: connected to {sock.getpeername()} from {sock.getsockname()}")
        try:
            while not self.s.done.is_set():
                data = sock.recv(CHUNK)
                if not data:
                    break
                self.frame(w.CMD_PSH, sid, data)
        except OSError:
            pass
        self.close_stream(sid, send_fin=True)

    def close_stream(self, sid, send_fin):
        st = self.streams.pop(sid, None)
        if st is None:
            return
        with st["lock"]:
            st["closed"] = True
            sock = st["sock"]
        _shut(sock)
        if send_fin:
            self.frame(w.CMD_FIN, sid)


class BasicPlugin:
    """One destination connection, raw bytes (ssm.md section 5, basic mode)."""

    mode = "basic"

    def __init__(self, session):
        self.s = session
        self.sock = None
        self.ready = False
        self.lock = threading.Lock()
        self.ssh = session.properties.get("type") != "LocalPortForwarding"

    def start(self):
        threading.Thread(target=self.connect, daemon=True).start()

    def connect(self):
        try:
            sock = self.s.dial_destination()
        except OSError as err:
            self.s.log(f"basic: {err}")
            self.s.send_data(w.P_FLAG, w.flag_payload(w.FLAG_CONNECT_TO_PORT_ERROR))
            self.s.finish("connect-failed", f"Unable to connect to specified port: {err}")
            return
        with self.lock:
            self.sock = sock
            self.ready = True
        threading.Thread(target=self.pump, args=(sock,), daemon=True).start()

    def pump(self, sock):
        try:
            while not self.s.done.is_set():
                data = sock.recv(CHUNK)
                if not data:
                    break
                self.s.send_data(w.P_OUTPUT, data)
        except OSError:
            pass
        with self.lock:
            current = self.sock is sock
            if current:
                self.sock = None
        if current and self.ssh:
            self.s.finish("destination-closed")

    def data(self, payload):
        with self.lock:
            sock = self.sock
        if sock is None:
            # LocalPortForwarding basic: the next data after DisconnectToPort re-dials.
            self.ready = False
            threading.Thread(target=self.connect, daemon=True).start()
            raise NotReady()
        try:
            sock.sendall(payload)
        except OSError:
            pass

    def flag(self, flag):
        if flag == w.FLAG_DISCONNECT_TO_PORT:
            with self.lock:
                sock, self.sock = self.sock, None
            _shut(sock)

    def size(self, payload):
        pass

    def stop(self):
        with self.lock:
            sock, self.sock = self.sock, None
        _shut(sock)


class ShellPlugin:
    """Standard_Stream: /bin/sh on a pty, as the lab user (ssm.md section 6)."""

    mode = "shell"

    def __init__(self, session):
        self.s = session
        self.ready = False
        self.master = None
        self.proc = None

    def start(self):
        user = pwd.getpwnam(self.s.agent.user)
        master, slave = pty.openpty()
        env = {
            "HOME": user.pw_dir,
            "USER": user.pw_name,
            "LOGNAME": user.pw_name,
            "SHELL": "/bin/sh",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
        }
        self.proc = subprocess.Popen(
            ["setsid", "-c", "/bin/sh"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=user.pw_dir if os.path.isdir(user.pw_dir) else "/",
            env=env,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.ready = True
        threading.Thread(target=self.pump, daemon=True).start()

    def pump(self):
        pending = b""
        while not self.s.done.is_set():
            try:
                data = os.read(self.master, CHUNK)
            except OSError:
                break
            if not data:
                break
            data = pending + data
            # Cut on a UTF-8 boundary: hold back an incomplete trailing sequence.
            cut = len(data)
            for back in range(1, min(4, len(data)) + 1):
                b = data[-back]
                if b & 0xC0 == 0x80:
                    continue
                if b & 0x80 and back < (2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4):
                    cut = len(data) - back
                break
            pending = data[cut:]
            if data[:cut]:
                self.s.send_data(w.P_OUTPUT, data[:cut])
        if self.proc:
            self.proc.wait()
        self.s.finish("shell-exited")

    def data(self, payload):
        os.write(self.master, payload)

    def size(self, payload):
        try:
            size = json.loads(payload.decode())
            rows, cols = int(size["rows"]), int(size["cols"])
        except (ValueError, KeyError, TypeError):
            return
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def flag(self, flag):
        pass

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                self.proc.kill()
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None


def main():
    # A real agent runs under systemd, with every signal at its default action, and its
    # shells inherit that. A lab started from a script's background job (`cmd &`) would
    # otherwise hand on SIGINT and SIGQUIT ignored, and Ctrl-C could not stop `sleep`.
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    with open(sys.argv[1]) as f:
        config = json.load(f)
    Agent(config, sys.argv[2], sys.argv[3]).run()


if __name__ == "__main__":
    main()

"""A minimal Session Manager client for the ssm_lab self-tests: boto3 for the API,
websockets for the data channel, ssm_wire for the frames. Independent of aws-hop.

    ssm_probe.py COMMAND ARGS...    (prints one JSON object on stdout)

It runs as a client on the laptop (Lab::aws_client): the real names resolve to the fakes
through the lab hosts file, TLS is checked against the lab CA.

Commands:
  describe [ID...]                      DescribeInstanceInformation (filtered by ids)
  start TARGET [DOC [PARAMS_JSON]]      StartSession, the answer or the error
  sessions STATE                        DescribeSessions (Active|History)
  forward TARGET HOST PORT HEX [CV]     AWS-StartPortForwardingSessionToRemoteHost; smux stream
                                        3; send HEX, read what comes back (ClientVersion CV,
                                        default 1.2.764.0); then TerminateSession
  ssh TARGET HEX                        AWS-StartSSHSession (basic mode); send HEX, read
  shell TARGET TEXT                     the default shell: Size, TEXT typed (\\n -> \\r), then
                                        everything until channel_closed
  bad-token TARGET                      StartSession, then open the channel with a wrong token
  resume TARGET HOST PORT               a forward whose channel the gateway closes (1000 Bye,
                                        armed by the test): ResumeSession, reconnect, carry on
"""

import json
import os
import queue
import ssl
import struct
import sys
import threading
import time
import uuid

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import ssm_wire as w

CONFIG = Config(retries={"total_max_attempts": 1})
CLIENT_VERSION = "1.2.764.0"


def out(value):
    print(json.dumps(value))


def session():
    return boto3.session.Session(region_name=os.environ["AWS_REGION"])


def ssm():
    return session().client("ssm", config=CONFIG)


def error(err):
    return {"ok": False, "status": err.response["ResponseMetadata"]["HTTPStatusCode"], "code": err.response["Error"]["Code"], "message": err.response["Error"].get("Message", "")}


class Channel:
    """One data channel: reliable in both directions (acks, reorder buffer, resends)."""

    def __init__(self, url, token, client_version=CLIENT_VERSION, state=None):
        self.client_version = client_version
        # Sequence state survives a reconnect (ssm.md section 3).
        self.state = state or {"out_seq": 0, "expected": 0, "unacked": {}, "inbuf": {}}
        self.events = queue.Queue()
        self.lock = threading.Lock()
        self.close_info = None
        # What arrived, in order: ("ack", seq) and ("data", payload type).
        self.trace = []
        creds = session().get_credentials().get_frozen_credentials()
        request = AWSRequest(method="GET", url=url.replace("wss://", "https://", 1))
        SigV4Auth(creds, "ssmmessages", os.environ["AWS_REGION"]).add_auth(request)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")]
        context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
        self.ws = connect(url, ssl=context, compression=None, open_timeout=15, additional_headers=headers)
        self.ws.send(json.dumps({"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4()), "TokenValue": token, "ClientId": str(uuid.uuid4()), "ClientVersion": client_version}))
        self.alive = True
        threading.Thread(target=self.reader, daemon=True).start()
        threading.Thread(target=self.resender, daemon=True).start()

    def reader(self):
        st = self.state
        try:
            for raw in self.ws:
                if isinstance(raw, str):
                    self.events.put(("text", raw))
                    continue
                m = w.decode(raw)
                if m.payload and not m.digest_ok():
                    self.events.put(("bad-digest", m.message_type))
                if m.message_type == w.OUTPUT:
                    with self.lock:
                        self.trace.append(("data", m.payload_type))
                        self.ws.send(w.ack_for(m))
                        if m.seq < st["expected"]:
                            continue
                        if m.seq > st["expected"]:
                            st["inbuf"][m.seq] = m
                            continue
                        ready = [m]
                        st["expected"] += 1
                        while st["expected"] in st["inbuf"]:
                            ready.append(st["inbuf"].pop(st["expected"]))
                            st["expected"] += 1
                    for r in ready:
                        self.events.put(("data", r))
                elif m.message_type == w.ACK:
                    seq = m.json()["AcknowledgedMessageSequenceNumber"]
                    with self.lock:
                        self.trace.append(("ack", seq))
                        st["unacked"].pop(seq, None)
                elif m.message_type == w.CHANNEL_CLOSED:
                    self.events.put(("channel_closed", m.json()))
                else:
                    self.events.put(("control", m.message_type))
        except ConnectionClosed:
            pass
        except Exception as err:  # noqa: BLE001 - reported, not swallowed
            self.events.put(("error", repr(err)))
        self.close_info = {"code": self.ws.close_code, "reason": self.ws.close_reason}
        self.alive = False
        self.events.put(("ws_closed", self.close_info))

    def resender(self):
        while self.alive:
            time.sleep(0.2)
            with self.lock:
                now = time.monotonic()
                for seq, entry in sorted(self.state["unacked"].items()):
                    if now - entry[1] > 0.3:
                        entry[1] = now
                        try:
                            self.ws.send(entry[0])
                        except ConnectionClosed:
                            return

    def send(self, payload_type, payload):
        with self.lock:
            seq = self.state["out_seq"]
            self.state["out_seq"] += 1
            raw = w.encode(w.INPUT, seq, 0, payload_type, payload)
            self.state["unacked"][seq] = [raw, time.monotonic()]
            try:
                self.ws.send(raw)
            except ConnectionClosed:
                pass  # resent on the next channel

    def next(self, timeout):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return ("timeout", None)

    def handshake(self, timeout=15):
        """Answers the HandshakeRequest; returns (request, complete)."""
        request = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kind, m = self.next(deadline - time.monotonic())
            if kind != "data":
                if kind in ("ws_closed", "channel_closed", "timeout"):
                    raise RuntimeError(f"handshake: {kind} {m}")
                continue
            if m.payload_type == w.P_HANDSHAKE_REQUEST:
                request = m.json()
                actions = [{"ActionType": a["ActionType"], "ActionStatus": 1, "ActionResult": None, "Error": ""} for a in request["RequestedClientActions"]]
                self.response_seq = self.state["out_seq"]
                self.send(w.P_HANDSHAKE_RESPONSE, json.dumps({"ClientVersion": self.client_version, "ProcessedClientActions": actions, "Errors": None}))
            elif m.payload_type == w.P_ENC_CHALLENGE_REQUEST:
                self.send(w.P_ENC_CHALLENGE_RESPONSE, m.payload)
            elif m.payload_type == w.P_HANDSHAKE_COMPLETE:
                return request, m.json()
        raise RuntimeError("handshake timed out")

    def handshake_ack_first(self, timeout=5):
        """True when the agent's ack of our HandshakeResponse arrived before its
        HandshakeComplete (waits for the ack if it has not come yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                trace = list(self.trace)
            if ("ack", self.response_seq) in trace:
                ack = trace.index(("ack", self.response_seq))
                complete = trace.index(("data", w.P_HANDSHAKE_COMPLETE))
                return ack < complete
            time.sleep(0.01)
        raise RuntimeError("the agent never acknowledged the HandshakeResponse")

    def close(self):
        self.alive = False
        self.ws.close()


def start(target, doc=None, params=None):
    kwargs = {"Target": target}
    if doc:
        kwargs["DocumentName"] = doc
    if params:
        kwargs["Parameters"] = params
    return ssm().start_session(**kwargs)


def cmd_describe(*ids):
    kwargs = {"Filters": [{"Key": "InstanceIds", "Values": list(ids)}]} if ids else {}
    res = ssm().describe_instance_information(**kwargs)
    out([{k: i.get(k) for k in ("InstanceId", "PingStatus", "AgentVersion", "PlatformType", "IPAddress")} for i in res["InstanceInformationList"]])


def cmd_start(target, doc=None, params=None):
    try:
        res = start(target, doc, json.loads(params) if params else None)
        out({"ok": True, "SessionId": res["SessionId"], "StreamUrl": res["StreamUrl"], "token": bool(res["TokenValue"])})
    except ClientError as err:
        out(error(err))


def cmd_sessions(state):
    res = ssm().describe_sessions(State=state)
    out([{k: s.get(k) for k in ("SessionId", "Target", "Status", "DocumentName")} for s in res["Sessions"]])


def smux_exchange(ch, payload, want, timeout=15):
    """Opens smux stream 3, sends `payload`, collects PSH data on it until `want` bytes,
    FIN, or timeout."""
    ch.send(w.P_OUTPUT, w.smux_frame(w.CMD_SYN, 3) + w.smux_frame(w.CMD_PSH, 3, payload))
    parser = w.SmuxParser()
    got, flags, fin = b"", [], False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(got) < want and not fin:
        kind, m = ch.next(deadline - time.monotonic())
        if kind == "data" and m.payload_type == w.P_OUTPUT:
            for _ver, cmd, sid, body in parser.feed(m.payload):
                if sid == 3 and cmd == w.CMD_PSH:
                    got += body
                elif sid == 3 and cmd == w.CMD_FIN:
                    fin = True
        elif kind == "data" and m.payload_type == w.P_FLAG:
            flags.append(struct.unpack(">I", m.payload[:4])[0])
        elif kind in ("ws_closed", "channel_closed"):
            break
    return got, flags, fin


def cmd_forward(target, host, port, hexdata, client_version=CLIENT_VERSION):
    res = start(target, "AWS-StartPortForwardingSessionToRemoteHost", {"host": [host], "portNumber": [port], "localPortNumber": ["0"]})
    ch = Channel(res["StreamUrl"], res["TokenValue"], client_version)
    request, complete = ch.handshake()
    ack_first = ch.handshake_ack_first()
    payload = bytes.fromhex(hexdata)
    got, flags, fin = smux_exchange(ch, payload, 1 if payload else 64, timeout=10)
    ssm().terminate_session(SessionId=res["SessionId"])
    ch.close()
    out({"SessionId": res["SessionId"], "handshake": request, "complete": complete, "handshake_ack_first": ack_first, "data_hex": got.hex(), "data": got.decode(errors="replace"), "flags": flags, "fin": fin})


def cmd_ssh(target, hexdata):
    res = start(target, "AWS-StartSSHSession", {"portNumber": ["22"]})
    ch = Channel(res["StreamUrl"], res["TokenValue"])
    request, _ = ch.handshake()
    if hexdata:
        ch.send(w.P_OUTPUT, bytes.fromhex(hexdata))
    got = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"\n" not in got:
        kind, m = ch.next(deadline - time.monotonic())
        if kind == "data" and m.payload_type == w.P_OUTPUT:
            got += m.payload
        elif kind in ("ws_closed", "channel_closed"):
            break
    ch.send(w.P_FLAG, w.flag_payload(w.FLAG_TERMINATE_SESSION))
    closed = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kind, m = ch.next(deadline - time.monotonic())
        if kind == "channel_closed":
            closed = m
        if kind in ("ws_closed", "timeout"):
            break
    out({"SessionId": res["SessionId"], "handshake": request, "data": got.decode(errors="replace"), "channel_closed": closed, "close": ch.close_info})


def cmd_shell(target, text):
    res = start(target)
    ch = Channel(res["StreamUrl"], res["TokenValue"])
    ch.send(w.P_SIZE, json.dumps({"cols": 132, "rows": 43}))
    ch.send(w.P_OUTPUT, text.replace("\n", "\r").encode())
    output, closed, types = b"", None, set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kind, m = ch.next(deadline - time.monotonic())
        if kind == "data":
            types.add(m.payload_type)
            if m.payload_type == w.P_OUTPUT:
                output += m.payload
        elif kind == "channel_closed":
            closed = m
        elif kind in ("ws_closed", "timeout"):
            break
    out({"SessionId": res["SessionId"], "output": output.decode(errors="replace"), "payload_types": sorted(types), "channel_closed": closed, "close": ch.close_info})


def cmd_bad_token(target):
    res = start(target, "AWS-StartSSHSession")
    ch = Channel(res["StreamUrl"], res["TokenValue"] + "x")
    kind, info = ch.next(10)
    while kind not in ("ws_closed", "timeout"):
        kind, info = ch.next(10)
    out({"SessionId": res["SessionId"], "event": kind, "close": info})


def cmd_resume(target, host, port):
    """The test arms `close_after_bytes` first; the echo server at HOST:PORT echoes."""
    res = start(target, "AWS-StartPortForwardingSessionToRemoteHost", {"host": [host], "portNumber": [port]})
    sid = res["SessionId"]
    ch = Channel(res["StreamUrl"], res["TokenValue"])
    ch.handshake()
    ch.send(w.P_OUTPUT, w.smux_frame(w.CMD_SYN, 3))
    parser = w.SmuxParser()
    sent, received, channels, closes = b"", b"", 1, []
    block = bytes(range(256)) * 4
    deadline = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline and len(received) < 64 * 1024:
        if len(sent) < 64 * 1024 and len(sent) - len(received) < 8192 and ch.alive:
            data = block[i % 7 :] + block[: i % 7]
            i += 1
            ch.send(w.P_OUTPUT, w.smux_frame(w.CMD_PSH, 3, data))
            sent += data
        kind, m = ch.next(0.05)
        if kind == "data" and m.payload_type == w.P_OUTPUT:
            for _v, cmd, s, body in parser.feed(m.payload):
                if s == 3 and cmd == w.CMD_PSH:
                    received += body
        elif kind == "ws_closed":
            closes.append(m)
            again = ssm().resume_session(SessionId=sid)
            ch = Channel(again["StreamUrl"], again["TokenValue"], state=ch.state)
            channels += 1
    ok = received == sent[: len(received)] and len(received) >= 64 * 1024
    ssm().terminate_session(SessionId=sid)
    ch.close()
    out({"SessionId": sid, "channels": channels, "closes": closes, "sent": len(sent), "received": len(received), "intact": ok})


COMMANDS = {
    "describe": cmd_describe,
    "start": cmd_start,
    "sessions": cmd_sessions,
    "forward": cmd_forward,
    "ssh": cmd_ssh,
    "shell": cmd_shell,
    "bad-token": cmd_bad_token,
    "resume": cmd_resume,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])

"""The fake SSM Session Manager: the session API, the Message Gateway Service (MGS) and
the link to the fake agent (ssm_agent.py), in the front's process (front.py imports this
module), so that the API and the gateway share session state in memory.

Written from protocols/ssm.md only (section 9 is its checklist), independently of any
client, so the client and this fake check each other.

    API  https://ssm.<region>.amazonaws.com (front.py, X-Amz-Target AmazonSSM.*):
         StartSession, ResumeSession, TerminateSession, DescribeSessions,
         DescribeInstanceInformation. Other SSM calls go on to moto.
    MGS  wss://ssmmessages.<region>.amazonaws.com/v1/data-channel/<sid>?role=publish_subscribe
         on SSM_IP:443 (N.2.4). The upgrade may be SigV4-signed (service ssmmessages):
         checked when present, counted either way. First frame: TEXT OpenDataChannelInput
         with the token; then binary ClientMessages relayed to and from the agent. MGS's
         own messages: start_publication, pause_publication, channel_closed.
    LINK tcp SUBNET_IP:8444 (N.1.2, the aws namespace's address in the private subnet):
         agents dial in from their instance (control connection, then one connection per
         session), as a real agent dials MGS. Framing: ssm_wire.link_send/link_recv.
    CTRL http SSM_IP:8080: fault injection and stats for the tests (see CONTROLS, and
         book/src/lab.md "The fake SSM Session Manager").
"""

import datetime
import json
import random
import secrets
import socket
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import serve as ws_serve

import ssm_wire as w
from sigv4 import AuthError

WSS_PORT = 443
CONTROL_PORT = 8080
LINK_PORT = w.LINK_PORT
AGENT_START_TIMEOUT = 10
OPEN_TIMEOUT = 10
HOLD_FOR_CLIENT = 10000  # frames kept for a resuming client (see to_client_raw)

DEFAULT_DOCUMENT = "SSM-SessionManagerRunShell"
# name -> (sessionType, parameter defaults (None = required), properties builder)
DOCUMENTS = {
    "SSM-SessionManagerRunShell": ("Standard_Stream", {}, lambda p: {}),
    "AWS-StartSSHSession": ("Port", {"portNumber": "22"}, lambda p: {"portNumber": p["portNumber"]}),
    "AWS-StartPortForwardingSession": (
        "Port",
        {"portNumber": "80", "localPortNumber": "0"},
        lambda p: {"portNumber": p["portNumber"], "type": "LocalPortForwarding", "localPortNumber": p["localPortNumber"]},
    ),
    "AWS-StartPortForwardingSessionToRemoteHost": (
        "Port",
        {"host": None, "portNumber": "80", "localPortNumber": "0"},
        lambda p: {"portNumber": p["portNumber"], "type": "LocalPortForwarding", "localPortNumber": p["localPortNumber"], "host": p["host"]},
    ),
}

IDLE_OUTPUT = "Your session timed out due to inactivity and has been terminated."
MAX_DURATION_OUTPUT = "Your session has reached its maximum session duration and has been terminated."

DEFAULT_CONTROLS = {
    "drop_to_client": 0.0,
    "drop_to_agent": 0.0,
    "duplicate_to_client": 0.0,
    "duplicate_to_agent": 0.0,
    "reorder_to_client": 0.0,
    "reorder_to_agent": 0.0,
    "never_ack": False,
    "agent_offline": [],
    "corrupt_next_token": False,
    "access_denied_next_start": False,
    "kms_required": False,
    "kms_key_id": "",
    # The agent acks HandshakeResponse after it has sent HandshakeComplete (the old fake's
    # order); the real agent acks first. A fault, for clients that must survive it.
    "late_handshake_ack": False,
    # An IAM policy that allows ssm:StartSession only with these documents (None: any), as
    # teams write for `ProxyCommand aws ssm start-session --document-name AWS-StartSSHSession`.
    "allowed_documents": None,
    # A managed node (hybrid activation, id "mi-" + 17 hex digits) that web-1's agent also
    # serves: DescribeInstanceInformation lists it as a ManagedInstance, and sessions to it
    # reach web-1's machine. None: no managed node.
    "hybrid_node": None,
    "idle_timeout_s": 0,
    "max_session_duration_s": 0,
    "close_after_bytes": None,
    "start_publication_on_open": "resume",
    "seed": None,
}

COUNTERS = [
    "sessions_started",
    "sessions_resumed",
    "terminated_by_api",
    "terminated_by_flag",
    "terminated_by_agent",
    "timed_out_idle",
    "timed_out_max",
    "data_channels_opened",
    "upgrades_signed",
    "upgrades_unsigned",
    "upgrades_refused",
    "tokens_refused",
    "dropped_to_client",
    "dropped_to_agent",
    "duplicated_to_client",
    "duplicated_to_agent",
    "reordered_to_client",
    "reordered_to_agent",
    "acks_dropped",
    "dropped_no_client",
    "agent_paused_no_client",
    "held_no_client",
    "frames_to_client",
    "frames_to_agent",
    "bytes_to_client",
    "bytes_to_agent",
    "closed_bye",
    "pauses",
    "bad_frames_from_client",
    "bad_digest_from_client",
    "nul_padded_from_client",
    "text_frames_from_client",
    "start_refused",
]


class ApiError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Session:
    def __init__(self, sid, target, document, session_type, parameters, properties, reason, owner):
        self.sid = sid
        self.target = target
        self.document = document
        self.session_type = session_type
        self.parameters = parameters
        self.properties = properties
        self.reason = reason
        self.owner = owner
        self.status = "Connecting"
        self.start = time.time()
        self.end = None
        self.tokens = set()
        self.client = None  # the attached client WebSocket
        self.send_lock = threading.Lock()  # one writer on the client WebSocket; guards client
        self.undelivered = []  # frames for the client while none is attached (resume)
        self.link = None  # the agent's data connection
        self.link_lock = threading.Lock()
        self.link_ready = threading.Event()
        self.agent_started = False
        self.channels = 0
        self.last_activity = time.monotonic()
        self.held = {"to_client": None, "to_agent": None}  # reorder
        self.agent_info = {}
        self.ended_reason = None
        self.kms = False
        self.lock = threading.Lock()

    def summary(self):
        return {
            "SessionId": self.sid,
            "Target": self.target,
            "DocumentName": self.document,
            "SessionType": self.session_type,
            "Parameters": self.parameters,
            "Properties": self.properties,
            "Reason": self.reason,
            "Status": self.status,
            "data_channels": self.channels,
            "client_attached": self.client is not None,
            "agent": self.agent_info,
            "ended": self.ended_reason,
            "kms": self.kms,
        }


class Gateway:
    def __init__(self, lab, log):
        self.lab = lab
        self.log = log
        c = lab.config
        net = c["net"]
        self.ssm_ip = c.get("ssm_ip", f"{net}.2.4")
        self.subnet_ip = c.get("subnet_ip", f"{net}.1.2")
        self.region = c["region"]
        self.account = c["account_id"]
        self.lock = threading.RLock()
        self.sessions = {}
        self.agents = {}  # instance id -> {"sock", "lock", "info", "since"}
        self.reset()

    # -- controls and stats -----------------------------------------------------------

    def reset(self):
        with self.lock:
            self.controls = json.loads(json.dumps(DEFAULT_CONTROLS))
            self.counters = dict.fromkeys(COUNTERS, 0)
            self.recorded = []  # session ids started since the last reset
            self.issued = []  # every stream token handed out since the last reset (tests grep logs for them)
            self.random = random.Random()
            self.bye_budget = None

    def control(self, body):
        actions = []
        with self.lock:
            if body.get("reset"):
                self.reset()
            if "seed" in body and body["seed"] is not None:
                self.random.seed(body["seed"])
            for key in ("drop", "duplicate", "reorder"):
                if key in body:
                    self.controls[f"{key}_to_client"] = self.controls[f"{key}_to_agent"] = float(body[key])
            for key, value in body.items():
                if key in DEFAULT_CONTROLS:
                    self.controls[key] = value
            if "agent_online" in body:
                offline = set(self.controls["agent_offline"])
                for iid, online in body["agent_online"].items():
                    (offline.discard if online else offline.add)(iid)
                self.controls["agent_offline"] = sorted(offline)
            if body.get("close_after_bytes") is not None:
                self.bye_budget = int(body["close_after_bytes"])
            if body.get("close_all"):
                actions.append(self.close_all_bye)
            if body.get("pause_ms"):
                actions.append(lambda: self.pause(int(body["pause_ms"])))
            controls = dict(self.controls)
        for action in actions:
            action()
        return controls

    def count(self, key, n=1):
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def stats(self):
        with self.lock:
            out = dict(self.counters)
            out["controls"] = dict(self.controls)
            out["agents_online"] = sorted(i for i in self.agents if i not in self.controls["agent_offline"])
            out["sessions"] = [self.sessions[s].summary() for s in self.recorded if s in self.sessions]
            out["tokens_issued"] = list(self.issued)
            out["active_sessions"] = sum(1 for s in self.sessions.values() if s.status not in ("Terminated", "Failed"))
        return out

    def online(self, iid):
        agent = self.agent_id(iid)
        with self.lock:
            return agent in self.agents and iid not in self.controls["agent_offline"] and agent not in self.controls["agent_offline"]

    # -- the API ----------------------------------------------------------------------

    def api(self, action, body):
        handler = {
            "StartSession": self.start_session,
            "ResumeSession": self.resume_session,
            "TerminateSession": self.terminate_session,
            "DescribeSessions": self.describe_sessions,
            "DescribeInstanceInformation": self.describe_instance_information,
        }.get(action)
        if handler is None:
            return None
        return handler(body)

    def new_token(self, session):
        with self.lock:
            corrupt = self.controls["corrupt_next_token"]
            self.controls["corrupt_next_token"] = False
        token = secrets.token_urlsafe(96)
        if corrupt:
            self.log(f"ssm: handing out a corrupt token for {session.sid}")
            return "corrupt-" + token
        session.tokens.add(token)
        with self.lock:
            self.issued.append(token)
        return token

    def stream_url(self, sid):
        return f"wss://ssmmessages.{self.region}.amazonaws.com/v1/data-channel/{sid}?role=publish_subscribe"

    def start_session(self, body):
        target = body.get("Target")
        if not isinstance(target, str) or not 1 <= len(target) <= 400:
            raise ApiError("ValidationException", "1 validation error detected: Value at 'target' failed to satisfy constraint: Member must have length between 1 and 400")
        with self.lock:
            denied = self.controls["access_denied_next_start"]
            self.controls["access_denied_next_start"] = False
        if denied:
            self.count("start_refused")
            raise ApiError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{self.account}:user/hoplab is not authorized to perform: ssm:StartSession on resource: "
                f"arn:aws:ec2:{self.region}:{self.account}:instance/{target} because no identity-based policy allows the ssm:StartSession action",
            )
        document = body.get("DocumentName") or DEFAULT_DOCUMENT
        with self.lock:
            allowed = self.controls["allowed_documents"]
        if allowed is not None and document not in allowed:
            self.count("start_refused")
            raise ApiError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{self.account}:user/hoplab is not authorized to perform: ssm:StartSession on resource: "
                f"arn:aws:ssm:{self.region}::document/{document} because no identity-based policy allows the ssm:StartSession action",
            )
        if document not in DOCUMENTS:
            self.count("start_refused")
            raise ApiError("InvalidDocument", f"Document with name {document} does not exist.")
        session_type, defaults, props = DOCUMENTS[document]
        given = body.get("Parameters") or {}
        params = {}
        for key, values in given.items():
            if key not in defaults:
                self.count("start_refused")
                raise ApiError("InvalidDocument", f"Parameter \"{key}\" is not defined in document {document}.")
            if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
                raise ApiError("InvalidDocument", f"Parameter \"{key}\" must have exactly one string value.")
            params[key] = values[0]
        for key, default in defaults.items():
            if key not in params:
                if default is None:
                    self.count("start_refused")
                    raise ApiError("InvalidDocument", f"Parameter \"{key}\" is required by document {document}.")
                params[key] = default
        if not self.online(target) or not self.instance_running(target):
            self.count("start_refused")
            raise ApiError("TargetNotConnected", f"{target} is not connected.")
        sid = f"hoplab-{secrets.token_hex(9)[:17]}"
        session = Session(sid, target, document, session_type, given, props(params), body.get("Reason", ""), f"arn:aws:iam::{self.account}:user/hoplab")
        with self.lock:
            session.kms = bool(self.controls["kms_required"]) and session_type != "Port"
            self.sessions[sid] = session
            self.recorded.append(sid)
        self.count("sessions_started")
        token = self.new_token(session)
        self.log(f"ssm: StartSession {sid} {target} {document} {given}")
        return {"SessionId": sid, "TokenValue": token, "StreamUrl": self.stream_url(sid)}

    def instance_running(self, iid):
        inst = self.lab.instance(self.agent_id(iid))
        return inst is not None and inst["State"]["Name"] == "running"

    def agent_id(self, target):
        """The agent that serves `target`: web-1's for the managed node, else its own."""
        with self.lock:
            hybrid = self.controls["hybrid_node"]
        if hybrid and target == hybrid:
            for inst in self.managed_instances():
                if any(t["Key"] == "Name" and t["Value"] == "web-1" for t in inst.get("Tags", [])):
                    return inst["InstanceId"]
        return target

    def session(self, body):
        sid = body.get("SessionId")
        with self.lock:
            session = self.sessions.get(sid)
        if session is None:
            raise ApiError("DoesNotExistException", f"Session {sid} does not exist.")
        return session

    def resume_session(self, body):
        session = self.session(body)
        self.count("sessions_resumed")
        if session.status in ("Terminated", "Failed", "Terminating"):
            self.log(f"ssm: ResumeSession {session.sid}: session is over, empty token")
            return {"SessionId": session.sid, "TokenValue": "", "StreamUrl": self.stream_url(session.sid)}
        self.log(f"ssm: ResumeSession {session.sid}")
        return {"SessionId": session.sid, "TokenValue": self.new_token(session), "StreamUrl": self.stream_url(session.sid)}

    def terminate_session(self, body):
        session = self.session(body)
        if session.status not in ("Terminated", "Failed"):
            self.count("terminated_by_api")
            self.end_session(session, "api", "")
        return {"SessionId": session.sid}

    def describe_sessions(self, body):
        state = body.get("State")
        if state not in ("Active", "History"):
            raise ApiError("ValidationException", "1 validation error detected: Value at 'state' failed to satisfy constraint: Member must satisfy enum value set: [Active, History]")
        filters = {f.get("key"): f.get("value") for f in body.get("Filters") or []}
        with self.lock:
            sessions = list(self.sessions.values())
        out = []
        for s in sorted(sessions, key=lambda s: -s.start):
            over = s.status in ("Terminated", "Failed")
            if (state == "Active") == over:
                continue
            if filters.get("Target") not in (None, s.target) or filters.get("SessionId") not in (None, s.sid) or filters.get("Status") not in (None, s.status):
                continue
            item = {"SessionId": s.sid, "Target": s.target, "Status": s.status, "StartDate": s.start, "DocumentName": s.document, "Owner": s.owner, "OutputUrl": {}}
            if s.reason:
                item["Reason"] = s.reason
            if s.end:
                item["EndDate"] = s.end
            if self.controls["max_session_duration_s"]:
                item["MaxSessionDuration"] = str(max(1, int(self.controls["max_session_duration_s"]) // 60))
            out.append(item)
        return {"Sessions": out[: int(body.get("MaxResults") or 200)]}

    def managed_instances(self):
        """Instances with the SSM agent installed: the lab's `web-*` instances."""
        res = self.lab.ec2.describe_instances()
        for r in res["Reservations"]:
            for i in r["Instances"]:
                name = next((t["Value"] for t in i.get("Tags", []) if t["Key"] == "Name"), "")
                if name.startswith("web-"):
                    yield i

    def describe_instance_information(self, body):
        wanted = {}
        for f in body.get("InstanceInformationFilterList") or []:
            wanted[f.get("key")] = set(f.get("valueSet") or [])
        for f in body.get("Filters") or []:
            wanted[f.get("Key")] = set(f.get("Values") or [])
        out = []
        for inst in self.managed_instances():
            iid = inst["InstanceId"]
            with self.lock:
                agent = self.agents.get(iid)
            online = self.online(iid) and inst["State"]["Name"] == "running"
            ip = inst.get("PrivateIpAddress", "")
            info = {
                "InstanceId": iid,
                "PingStatus": "Online" if online else "ConnectionLost",
                "LastPingDateTime": time.time() if online else (agent["since"] if agent else time.time() - 3600),
                "AgentVersion": (agent or {}).get("info", {}).get("agent_version", "3.3.1142.0"),
                "IsLatestVersion": False,
                "PlatformType": "Linux",
                "PlatformName": "Debian GNU/Linux",
                "PlatformVersion": "12",
                "ResourceType": "EC2Instance",
                "IPAddress": ip,
                "ComputerName": f"ip-{ip.replace('.', '-')}.ec2.internal",
                "SourceId": iid,
                "SourceType": "AWS::EC2::Instance",
            }
            keep = True
            for key, values in wanted.items():
                field = {"InstanceIds": iid, "PingStatus": info["PingStatus"], "PlatformTypes": "Linux", "ResourceType": "EC2Instance", "AgentVersion": info["AgentVersion"]}.get(key)
                if field is not None and values and field not in values:
                    keep = False
            if keep:
                out.append(info)
        with self.lock:
            hybrid = self.controls["hybrid_node"]
        web1 = self.agent_id(hybrid) if hybrid else None
        base = next((i for i in out if i["InstanceId"] == web1), None)
        if hybrid and web1 != hybrid:
            # Listed whatever the filter on web-1's id: rebuild from web-1's own record.
            inst = next((i for i in self.managed_instances() if i["InstanceId"] == web1), None)
            if base is None and inst is not None:
                ip = inst.get("PrivateIpAddress", "")
                online = self.online(hybrid) and inst["State"]["Name"] == "running"
                base = {"PingStatus": "Online" if online else "ConnectionLost", "LastPingDateTime": time.time(), "AgentVersion": "3.3.1142.0", "IPAddress": ip, "PlatformType": "Linux", "PlatformName": "Debian GNU/Linux", "PlatformVersion": "12", "IsLatestVersion": False}
            ids = wanted.get("InstanceIds")
            if base is not None and (not ids or hybrid in ids):
                node = dict(base)
                node.update({"InstanceId": hybrid, "ResourceType": "ManagedInstance", "ComputerName": "onprem-web", "SourceId": hybrid, "SourceType": "AWS::SSM::ManagedInstance", "PingStatus": "Online" if self.online(hybrid) else "ConnectionLost"})
                out.append(node)
            if ids and web1 not in ids:
                out = [i for i in out if i["InstanceId"] in ids]
        return {"InstanceInformationList": out}

    # -- ending sessions ------------------------------------------------------------------

    def end_session(self, session, why, output):
        """Terminates `session`: channel_closed (with `output`) to the client and the agent,
        then the connections close."""
        with session.lock:
            if session.status in ("Terminated", "Failed"):
                return
            session.status = "Terminated"
            session.end = time.time()
            session.ended_reason = why
            client, link = session.client, session.link
        self.log(f"ssm: session {session.sid} ends ({why}) {output!r}")
        frame = w.channel_closed(session.sid, session.target, output)
        if client is not None:
            try:
                with session.send_lock:
                    client.send(frame)
                client.close(1000, "")
            except Exception:
                pass
        if link is not None:
            try:
                w.link_send(link, session.link_lock, b"B", w.channel_closed(session.sid, session.target, output))
            except OSError:
                pass
            threading.Timer(2.0, lambda: _close(link)).start()

    def close_all_bye(self):
        with self.lock:
            sessions = list(self.sessions.values())
        for s in sessions:
            ws = s.client
            if ws is not None and s.status not in ("Terminated", "Failed"):
                self.count("closed_bye")
                self.log(f"ssm: closing the data channel of {s.sid} with 1000 Bye")
                threading.Thread(target=ws.close, args=(1000, "Bye"), daemon=True).start()

    def pause(self, ms):
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.status not in ("Terminated", "Failed")]
        self.count("pauses")
        for s in sessions:
            self.to_agent_raw(s, w.publication(w.PAUSE_PUBLICATION))
            self.to_client_raw(s, w.publication(w.PAUSE_PUBLICATION))

        def resume():
            for s in sessions:
                self.to_agent_raw(s, w.publication(w.START_PUBLICATION))
                self.to_client_raw(s, w.publication(w.START_PUBLICATION))

        threading.Timer(ms / 1000.0, resume).start()

    def ticker(self):
        while True:
            time.sleep(0.2)
            with self.lock:
                idle = float(self.controls["idle_timeout_s"] or 0)
                longest = float(self.controls["max_session_duration_s"] or 0)
                live = [s for s in self.sessions.values() if s.status not in ("Terminated", "Failed")]
            now = time.monotonic()
            for s in live:
                if longest and time.time() - s.start > longest:
                    self.count("timed_out_max")
                    self.end_session(s, "max-duration", MAX_DURATION_OUTPUT)
                elif idle and now - s.last_activity > idle:
                    self.count("timed_out_idle")
                    self.end_session(s, "idle", IDLE_OUTPUT)

    # -- relaying with faults -------------------------------------------------------------

    def to_client_raw(self, session, raw):
        """Sends to the attached client. With none attached (between a 1000 Bye and the
        ResumeSession that follows), MGS holds up to HOLD_FOR_CLIENT frames for the next data
        channel; a frame that meets a closing WebSocket is lost and the agent resends it."""
        with session.send_lock:
            ws = session.client
            if ws is None:
                if len(session.undelivered) >= HOLD_FOR_CLIENT:
                    return False
                session.undelivered.append(raw)
                self.count("held_no_client")
                return True
            try:
                ws.send(raw)
                return True
            except Exception:
                return False

    def to_agent_raw(self, session, raw):
        link = session.link
        if link is None:
            return False
        try:
            w.link_send(link, session.link_lock, b"B", raw)
            return True
        except OSError:
            return False

    def relay(self, session, direction, m):
        """Sends data frame `m` on in `direction` ('to_client'/'to_agent') through the
        fault injector."""
        send = self.to_client_raw if direction == "to_client" else self.to_agent_raw
        data = m.message_type in (w.INPUT, w.OUTPUT)
        if not data:
            if m.message_type == w.ACK and direction == "to_client" and self.controls["never_ack"]:
                self.count("acks_dropped")
                return
            if not send(session, m.raw) and direction == "to_client":
                self.count("dropped_no_client")
            return
        session.last_activity = time.monotonic()
        with self.lock:
            c = self.controls
            r = self.random
            drop = r.random() < float(c[f"drop_{direction}"])
            dup = r.random() < float(c[f"duplicate_{direction}"])
            reorder = r.random() < float(c[f"reorder_{direction}"])
            self.counters[f"frames_{direction}"] += 1
            self.counters[f"bytes_{direction}"] += len(m.payload)
            bye = False
            if self.bye_budget is not None:
                self.bye_budget -= len(m.payload)
                if self.bye_budget <= 0:
                    self.bye_budget = None
                    self.controls["close_after_bytes"] = None
                    bye = True
        if bye:
            threading.Thread(target=self.close_all_bye, daemon=True).start()
        if drop:
            self.count(f"dropped_{direction}")
            return
        with session.lock:
            held = session.held[direction]
            if reorder and held is None:
                session.held[direction] = m.raw
                threading.Timer(0.15, self.flush_held, args=(session, direction, m.raw)).start()
                return
            session.held[direction] = None
        ok = send(session, m.raw)
        if not ok and direction == "to_client":
            self.count("dropped_no_client")
        if held is not None:
            send(session, held)
            self.count(f"reordered_{direction}")
        if dup:
            send(session, m.raw)
            self.count(f"duplicated_{direction}")

    def flush_held(self, session, direction, raw):
        with session.lock:
            if session.held[direction] is not raw:
                return
            session.held[direction] = None
        (self.to_client_raw if direction == "to_client" else self.to_agent_raw)(session, raw)

    # -- the agent link ---------------------------------------------------------------------

    def serve_link(self):
        srv = socket.create_server((self.subnet_ip, LINK_PORT), reuse_port=False)
        self.log(f"ssm: agent link on tcp://{self.subnet_ip}:{LINK_PORT}")
        while True:
            sock, addr = srv.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.link_conn, args=(sock, addr), daemon=True).start()

    def link_conn(self, sock, addr):
        try:
            first = w.link_recv(sock)
            if first is None or first[0] != b"J":
                return sock.close()
            hello = first[1]
            if "agent" in hello:
                return self.agent_control(sock, addr, hello)
            if "session" in hello:
                return self.agent_data(sock, hello)
        except (OSError, ValueError) as err:
            self.log(f"ssm: link from {addr[0]}: {err!r}")
        sock.close()

    def agent_control(self, sock, addr, hello):
        iid = hello["agent"]
        entry = {"sock": sock, "lock": threading.Lock(), "info": hello, "since": time.time(), "ip": addr[0]}
        with self.lock:
            old = self.agents.get(iid)
            self.agents[iid] = entry
        if old:
            _close(old["sock"])
        self.log(f"ssm: agent {iid} online from {addr[0]} (version {hello.get('agent_version')})")
        try:
            while w.link_recv(sock) is not None:
                pass
        except OSError:
            pass
        with self.lock:
            if self.agents.get(iid) is entry:
                del self.agents[iid]
        self.log(f"ssm: agent {iid} disconnected")
        sock.close()

    def agent_data(self, sock, hello):
        with self.lock:
            session = self.sessions.get(hello["session"])
        if session is None:
            return sock.close()
        session.link = sock
        session.link_ready.set()
        try:
            while True:
                item = w.link_recv(sock)
                if item is None:
                    break
                kind, data = item
                if kind == b"J":
                    self.agent_note(session, data)
                    continue
                m = w.decode(data)
                if m.message_type == w.AGENT_SESSION_STATE:
                    state = m.json().get("SessionState")
                    self.log(f"ssm: {session.sid} agent_session_state {state}")
                    if state == "Connected" and session.status == "Connecting":
                        session.status = "Connected"
                    if state == "Terminating":
                        why = session.agent_info.get("ended", "agent")
                        self.count("terminated_by_flag" if why == "flag" else "terminated_by_agent")
                        self.end_session(session, why, session.agent_info.get("output", ""))
                    continue
                self.relay(session, "to_client", m)
        except (OSError, ValueError) as err:
            self.log(f"ssm: {session.sid} agent link: {err!r}")
        session.link = None
        sock.close()

    def agent_note(self, session, data):
        """JSON notes from the agent for the stats: mode, ClientVersion, how it ended."""
        session.agent_info.update(data)

    # -- the data channel (MGS) -----------------------------------------------------------

    def process_request(self, connection, request):
        parts = urlsplit(request.path)
        if not parts.path.startswith("/v1/data-channel/"):
            return _refuse(404, "NotFoundException", f"No such resource: {parts.path}")
        connection.ssm_sid = parts.path.rsplit("/", 1)[1]
        connection.ssm_signed = False
        if request.headers.get("Authorization"):
            host = request.headers.get("Host", "")
            try:
                service = self.lab.verifier.verify_headers("GET", host, request.path, request.headers.raw_items(), b"")
                if service != "ssmmessages":
                    raise AuthError("scope", f"Credential should be scoped to correct service: 'ssmmessages', not '{service}'.")
            except AuthError as err:
                self.count("upgrades_refused")
                self.log(f"ssm: upgrade refused ({err.kind}): {err.message}")
                return _refuse(403, "AccessDeniedException" if err.kind != "signature" else "InvalidSignatureException", err.message)
            connection.ssm_signed = True
            self.count("upgrades_signed")
        else:
            self.count("upgrades_unsigned")
        return None

    def data_channel(self, ws):
        sid = ws.ssm_sid
        try:
            first = ws.recv(timeout=OPEN_TIMEOUT)
        except TimeoutError:
            return ws.close(1003, "The request to open data channel does not contain token.")
        except ConnectionClosed:
            return
        token = None
        if isinstance(first, str):
            try:
                token = json.loads(first).get("TokenValue")
            except (ValueError, AttributeError):
                token = None
        if not token:
            self.count("tokens_refused")
            return ws.close(1003, "The request to open data channel does not contain token.")
        with self.lock:
            session = self.sessions.get(sid)
        if session is None or token not in session.tokens or session.status in ("Terminated", "Failed"):
            self.count("tokens_refused")
            self.log(f"ssm: data channel for {sid}: bad token")
            return ws.close(1003, "Authentication failed: the token is not valid for this session.")
        session.tokens.discard(token)
        try:
            info = json.loads(first)
        except ValueError:
            info = {}
        resumed = session.channels > 0
        with session.send_lock:
            old = session.client
            session.client = ws
            held, session.undelivered = session.undelivered, []
            try:
                for raw in held:
                    ws.send(raw)
            except Exception:
                pass  # this channel is gone too; the agent resends
        session.channels += 1
        session.agent_info.setdefault("open_client_versions", []).append(info.get("ClientVersion"))
        self.count("data_channels_opened")
        if old is not None:
            threading.Thread(target=old.close, args=(1000, "Superseded"), daemon=True).start()
        self.log(f"ssm: data channel {session.channels} for {sid} open (signed={ws.ssm_signed}, ClientVersion={info.get('ClientVersion')})")
        if not session.agent_started:
            session.agent_started = True
            if not self.start_agent(session):
                return self.end_session(session, "agent", f"{session.target} is not connected.")
        elif not session.link_ready.wait(AGENT_START_TIMEOUT):
            return self.end_session(session, "agent", f"{session.target} is not connected.")
        mode = self.controls["start_publication_on_open"]
        if mode == "always" or (mode == "resume" and resumed):
            self.to_client_raw(session, w.publication(w.START_PUBLICATION))
        if resumed:
            # The agent was paused when the previous data channel went (below).
            self.to_agent_raw(session, w.publication(w.START_PUBLICATION))
        try:
            for message in ws:
                if isinstance(message, str):
                    self.count("text_frames_from_client")
                    continue
                try:
                    m = w.decode(message)
                except w.DecodeError as err:
                    self.count("bad_frames_from_client")
                    self.log(f"ssm: {sid}: bad frame from the client: {err}")
                    continue
                if m.padding == "nul":
                    self.count("nul_padded_from_client")
                if m.payload and not m.digest_ok():
                    self.count("bad_digest_from_client")
                if m.message_type in (w.INPUT, w.ACK):
                    self.relay(session, "to_agent", m)
        except ConnectionClosed:
            pass
        finally:
            with session.send_lock:
                detached = session.client is ws
                if detached:
                    session.client = None
            if detached:
                # With no client to deliver to, MGS holds the agent with pause_publication
                # until a data channel is resumed, and keeps what was already on its way
                # (to_client_raw). How MGS buffers is UNCONFIRMED (ssm.md section 3); dropping
                # it all would leave the agent to refill a window of holes at one head resend
                # per 100 ms tick: minutes for a few thousand frames.
                if session.status not in ("Terminated", "Failed"):
                    self.count("agent_paused_no_client")
                    self.to_agent_raw(session, w.publication(w.PAUSE_PUBLICATION))
            self.log(f"ssm: data channel of {sid} closed ({ws.close_code} {ws.close_reason!r})")

    def start_agent(self, session):
        with self.lock:
            agent = self.agents.get(self.agent_id(session.target))
            kms_key = self.controls["kms_key_id"] or f"arn:aws:kms:{self.region}:{self.account}:key/hoplab-ssm"
            late_ack = bool(self.controls["late_handshake_ack"])
        if agent is None:
            return False
        start = {
            "start": session.sid,
            "document": session.document,
            "session_type": session.session_type,
            "properties": session.properties,
            "kms_key_id": kms_key if session.kms else "",
            "late_handshake_ack": late_ack,
        }
        try:
            w.link_send(agent["sock"], agent["lock"], b"J", start)
        except OSError:
            return False
        return session.link_ready.wait(AGENT_START_TIMEOUT)

    # -- the control API ----------------------------------------------------------------

    def control_server(self):
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def reply(self, status, value):
                body = json.dumps(value, indent=1, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/stats"):
                    return self.reply(200, gateway.stats())
                return self.reply(404, {"error": f"no {self.path}"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError as err:
                    return self.reply(400, {"error": f"bad JSON: {err}"})
                if self.path.startswith("/reset"):
                    body = {"reset": True}
                elif not self.path.startswith("/control"):
                    return self.reply(404, {"error": f"no {self.path}"})
                unknown = [k for k in body if k not in DEFAULT_CONTROLS and k not in ("reset", "drop", "duplicate", "reorder", "agent_online", "close_all", "pause_ms")]
                if unknown:
                    return self.reply(400, {"error": f"unknown control(s): {', '.join(unknown)}"})
                gateway.log(f"ssm: control {json.dumps(body)}")
                return self.reply(200, gateway.control(body))

        srv = ThreadingHTTPServer((self.ssm_ip, CONTROL_PORT), Handler)
        srv.daemon_threads = True
        self.log(f"ssm: control on http://{self.ssm_ip}:{CONTROL_PORT}")
        srv.serve_forever()

    def serve(self, context):
        for target in (self.serve_link, self.control_server, self.ticker):
            threading.Thread(target=target, daemon=True).start()
        server = ws_serve(
            self.data_channel,
            self.ssm_ip,
            WSS_PORT,
            ssl=context,
            process_request=self.process_request,
            compression=None,
            max_size=16 * 1024 * 1024,
            server_header=None,
            ping_interval=None,
        )
        self.log(f"ssm: MGS on wss://{self.ssm_ip}:{WSS_PORT}")
        threading.Thread(target=server.serve_forever, daemon=True).start()


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _refuse(status, code, message):
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))])
    return Response(status, HTTPStatus(status).phrase, headers, body)

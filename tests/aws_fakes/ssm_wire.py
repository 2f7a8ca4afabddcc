"""The SSM Session Manager data-channel wire format (protocols/ssm.md sections 2-5),
shared by the fake gateway (ssm_gateway.py), the fake agent (ssm_agent.py) and the
self-test client (ssm_probe.py). Written from the protocol note only.

ClientMessage: a 120-byte big-endian header, then the payload.

    0 HeaderLength u32 (=116)   4 MessageType 32 B (space padded)   36 SchemaVersion u32 (=1)
    40 CreatedDate u64 ms       48 SequenceNumber i64               56 Flags u64
    64 MessageId 16 B (UUID halves swapped)   80 PayloadDigest SHA-256   112 PayloadType u32
    116 PayloadLength u32      120 Payload

Also here: the link between the gateway and the agent (length-prefixed frames over TCP,
the lab's stand-in for the agent's own WebSocket to MGS), smux v1 framing and the
4-part version comparison the agent applies to ClientVersion.
"""

import hashlib
import json
import struct
import time
import uuid

LINK_PORT = 8444  # the gateway's agent link (tcp, on the aws namespace's subnet address)

HEADER_LENGTH = 116
HEADER_SIZE = 120

INPUT = "input_stream_data"
OUTPUT = "output_stream_data"
ACK = "acknowledge"
CHANNEL_CLOSED = "channel_closed"
START_PUBLICATION = "start_publication"
PAUSE_PUBLICATION = "pause_publication"
AGENT_SESSION_STATE = "agent_session_state"

# PayloadType
P_UNSET, P_OUTPUT, P_ERROR, P_SIZE, P_PARAMETER = 0, 1, 2, 3, 4
P_HANDSHAKE_REQUEST, P_HANDSHAKE_RESPONSE, P_HANDSHAKE_COMPLETE = 5, 6, 7
P_ENC_CHALLENGE_REQUEST, P_ENC_CHALLENGE_RESPONSE, P_FLAG, P_STDERR, P_EXIT_CODE = 8, 9, 10, 11, 12

# Flag payloads (PayloadType 10, u32 big-endian)
FLAG_DISCONNECT_TO_PORT, FLAG_TERMINATE_SESSION, FLAG_CONNECT_TO_PORT_ERROR = 1, 2, 3

# Header flags
SYN, FIN = 1, 2

ZERO_DIGEST = bytes(32)


def now_ms():
    return int(time.time() * 1000)


def uuid_to_wire(u):
    b = u.bytes
    return b[8:] + b[:8]


def uuid_from_wire(b):
    return uuid.UUID(bytes=b[8:] + b[:8])


class Message:
    """A decoded ClientMessage. `raw` is the frame as received (resends reuse it)."""

    __slots__ = ("message_type", "schema_version", "created", "seq", "flags", "message_id", "digest", "payload_type", "payload_length", "payload", "raw", "padding")

    def __repr__(self):
        return f"<{self.message_type} seq={self.seq} flags={self.flags} ptype={self.payload_type} len={len(self.payload)}>"

    def digest_ok(self):
        return hashlib.sha256(self.payload).digest() == self.digest

    def json(self):
        return json.loads(self.payload.decode())


class DecodeError(ValueError):
    pass


def encode(message_type, seq=0, flags=0, payload_type=0, payload=b"", message_id=None, created=None, digest=None):
    if isinstance(payload, str):
        payload = payload.encode()
    mid = message_id or uuid.uuid4()
    if digest is None:
        digest = hashlib.sha256(payload).digest()
    return (
        struct.pack(">I", HEADER_LENGTH)
        + message_type.encode().ljust(32, b" ")
        + struct.pack(">IQqQ", 1, created or now_ms(), seq, flags)
        + uuid_to_wire(mid)
        + digest
        + struct.pack(">II", payload_type, len(payload))
        + payload
    )


def decode(raw):
    """Parses one frame the way the agent and plugin do (PayloadLength is not used for
    slicing; NULs and whitespace are stripped from MessageType)."""
    if len(raw) < HEADER_SIZE:
        raise DecodeError(f"frame of {len(raw)} bytes is shorter than the 120-byte header")
    m = Message()
    (hl,) = struct.unpack_from(">I", raw, 0)
    if hl == 0 or hl + 4 > len(raw):
        raise DecodeError(f"bad HeaderLength {hl}")
    field = raw[4:36]
    m.padding = "space" if field.endswith(b" ") else ("nul" if field.endswith(b"\x00") else "none")
    m.message_type = field.replace(b"\x00", b" ").strip().decode(errors="replace")
    if not m.message_type:
        raise DecodeError("empty MessageType")
    m.schema_version, m.created, m.seq, m.flags = struct.unpack_from(">IQqQ", raw, 36)
    m.message_id = uuid_from_wire(raw[64:80])
    m.digest = raw[80:112]
    m.payload_type, m.payload_length = struct.unpack_from(">II", raw, 112)
    m.payload = raw[hl + 4 :]
    m.raw = raw
    if hl != HEADER_LENGTH:
        raise DecodeError(f"HeaderLength {hl}, expected {HEADER_LENGTH}")
    if m.created == 0 and m.message_type not in (START_PUBLICATION, PAUSE_PUBLICATION):
        raise DecodeError("CreatedDate is 0")
    return m


def ack_for(m):
    """The acknowledge frame for message `m` (seq 0, Flags 3, PayloadType 0)."""
    body = json.dumps(
        {
            "AcknowledgedMessageType": m.message_type,
            "AcknowledgedMessageId": str(m.message_id),
            "AcknowledgedMessageSequenceNumber": m.seq,
            "IsSequentialMessage": True,
        },
        separators=(",", ":"),
    )
    return encode(ACK, 0, SYN | FIN, P_UNSET, body)


def publication(message_type):
    """start_publication / pause_publication as MGS sends them: empty payload, zero digest."""
    return encode(message_type, 0, 0, P_UNSET, b"", digest=ZERO_DIGEST)


def channel_closed(session_id, destination, output=""):
    mid = uuid.uuid4()
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{now_ms() % 1000:03d}Z"
    body = json.dumps(
        {
            "MessageId": str(mid),
            "CreatedDate": created,
            "DestinationId": destination,
            "SessionId": session_id,
            "MessageType": CHANNEL_CLOSED,
            "SchemaVersion": 1,
            "Output": output,
        }
    )
    return encode(CHANNEL_CLOSED, 0, 0, P_UNSET, body, message_id=mid)


def flag_payload(value):
    return struct.pack(">I", value)


# --- versions ------------------------------------------------------------------------


def version_tuple(text):
    """'1.2.764.0' -> (1, 2, 764, 0); None when it does not parse (the agent then falls
    back to basic mode)."""
    try:
        parts = [int(p) for p in str(text).strip().split(".")]
    except ValueError:
        return None
    if not parts or len(parts) > 4 or any(p < 0 for p in parts):
        return None
    return tuple(parts + [0] * (4 - len(parts)))


def version_ge(text, threshold):
    v, t = version_tuple(text), version_tuple(threshold)
    return v is not None and v >= t


def version_gt(text, threshold):
    v, t = version_tuple(text), version_tuple(threshold)
    return v is not None and v > t


# --- gateway <-> agent link: u32 length, one kind byte ('J' JSON, 'B' ClientMessage) --


def link_send(sock, lock, kind, data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    with lock:
        sock.sendall(struct.pack(">I", len(data) + 1) + kind + data)


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def link_recv(sock):
    """(kind, data) or None at EOF. JSON frames come back decoded."""
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    body = _read_exact(sock, n)
    if body is None:
        return None
    kind, data = body[:1], body[1:]
    if kind == b"J":
        return kind, json.loads(data.decode())
    return kind, data


# --- smux v1 ---------------------------------------------------------------------------

SMUX_VERSION = 1
CMD_SYN, CMD_FIN, CMD_PSH, CMD_NOP = 0, 1, 2, 3
SMUX_MAX_FRAME = 32768


def smux_frame(cmd, stream_id, data=b""):
    return struct.pack("<BBHI", SMUX_VERSION, cmd, len(data), stream_id) + data


class SmuxParser:
    """Accumulates the byte stream; yields (version, cmd, stream_id, data)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 8:
            ver, cmd, length, sid = struct.unpack_from("<BBHI", self.buf, 0)
            if len(self.buf) < 8 + length:
                break
            out.append((ver, cmd, sid, bytes(self.buf[8 : 8 + length])))
            del self.buf[: 8 + length]
        return out

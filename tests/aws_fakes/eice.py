"""The fake EC2 Instance Connect Endpoint data plane: `wss://<DnsName>/openTunnel`.

What it checks and does, in the order protocols/eice.md (sections 1.4-1.7, 5 and 6)
describes the service:

1. Only `GET /openTunnel`, with Host = the DnsName (or FipsDnsName) of an endpoint that
   exists and is `create-complete`. The log line of each tunnel says which name it was
   dialed by (`via DnsName NAME` or `via FipsDnsName NAME`).
2. The SigV4 query presign, recomputed with botocore (sigv4.py): algorithm, scope
   `<key>/<date>/<region>/ec2-instance-connect/aws4_request`, signed headers `host`,
   empty-payload hash, X-Amz-Expires <= 60, X-Amz-Date neither in the future nor past
   its expiry. Failure: 403 with the service's JSON error body and `x-amzn-RequestId`.
3. Parameters: instanceConnectEndpointId (must be this host's endpoint),
   privateIpAddress, remotePort (only 22 and 3389: anything else is the service's
   400 InvalidParameter), maxTunnelDuration 1-3600 (default 3600).
4. At most 20 tunnels at once per endpoint (the service quota); extra ones get 429.
5. A plain RFC 6455 101 (no subprotocol, no extension), then a TCP connection from
   this namespace (which sits in the private subnet) to privateIpAddress:remotePort.
   - connect fails: Close 1011 with the reason (the 101 has already been sent, as the
     service does);
   - target EOF: Close 1000; client Close: the target connection is closed;
   - maxTunnelDuration passes: Close 1008 "Tunnel duration exceeded...";
   - a text frame from the client: Close 1003.
   Binary frames carry raw bytes both ways; zero-length frames are tolerated.

The close codes for the non-1000 cases are the lab's choice: AWS does not document
them (eice.md section 8).
"""

import ipaddress
import json
import socket
import threading
import uuid
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.sync.server import serve as ws_serve

from sigv4 import AuthError

SERVICE = "ec2-instance-connect"
MAX_EXPIRES = 60  # eice.md 1.4: the CLI signs for 60 s; the service accepts no more.
ALLOWED_PORTS = {22, 3389}
MAX_TUNNELS = 20  # per endpoint, not adjustable (eice.md section 4)
CONNECT_TIMEOUT = 10
CLOSE_UNREACHABLE = 1011
CLOSE_DURATION = 1008
CLOSE_UNSUPPORTED = 1003


def refuse(status, code, message):
    """A non-101 answer shaped as the service's (eice.md section 5)."""
    body = json.dumps({"ErrorCode": code, "Message": message}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))])
    return Response(status, HTTPStatus(status).phrase, headers, body)


class Tunnels:
    """Counts open tunnels per endpoint id (slot taken at the handshake, given back when
    the tunnel ends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.open = {}

    def take(self, eid):
        with self.lock:
            if self.open.get(eid, 0) >= MAX_TUNNELS:
                return False
            self.open[eid] = self.open.get(eid, 0) + 1
            return True

    def give_back(self, eid):
        with self.lock:
            self.open[eid] -= 1


def serve(lab, context, log):
    tunnels = Tunnels()
    c = lab.config

    def process_request(connection, request):
        parts = urlsplit(request.path)
        host = (request.headers.get("Host") or "").split(":")[0]
        if parts.path != "/openTunnel":
            return refuse(404, "NotFound", f"No such resource: {parts.path}")
        endpoint = lab.endpoint_by_host(host)
        if endpoint is None:
            return refuse(404, "ResourceNotFound", f"No EC2 Instance Connect Endpoint answers to {host}.")
        try:
            params = lab.verifier.verify_presigned(SERVICE, host, parts.path, parts.query, max_expires=MAX_EXPIRES)
        except AuthError as err:
            log(f"eice refused ({err.kind}): {err.message}")
            code = {"unknown-key": "UnrecognizedClientException", "signature": "InvalidSignatureException"}.get(err.kind, "AccessDeniedException")
            return refuse(403, code, err.message)
        missing = [p for p in ("instanceConnectEndpointId", "remotePort", "privateIpAddress") if not params.get(p)]
        if missing:
            return refuse(400, "InvalidParameter", f"Missing required parameter(s): {', '.join(missing)}.")
        if params["instanceConnectEndpointId"] != endpoint["InstanceConnectEndpointId"]:
            return refuse(400, "InvalidParameter", f"The instanceConnectEndpointId {params['instanceConnectEndpointId']} does not match this endpoint.")
        try:
            port = int(params["remotePort"])
        except ValueError:
            port = -1
        if port not in ALLOWED_PORTS:
            # The service's words, as seen in the wild (aidansteele/rdsconn issue #5).
            return refuse(400, "InvalidParameter", "The specified RemotePort is not valid. Specify either 22 or 3389 as the RemotePort value.")
        try:
            ip = ipaddress.ip_address(params["privateIpAddress"])
        except ValueError:
            return refuse(400, "InvalidParameter", f"The specified PrivateIpAddress {params['privateIpAddress']} is not valid.")
        try:
            duration = int(params.get("maxTunnelDuration", "3600"))
        except ValueError:
            duration = 0
        if not 1 <= duration <= 3600:
            return refuse(400, "InvalidParameter", "The specified MaxTunnelDuration is not valid. Specify a value between 1 and 3600.")
        eid = endpoint["InstanceConnectEndpointId"]
        if not tunnels.take(eid):
            return refuse(429, "ThrottlingException", f"The maximum number of concurrent connections ({MAX_TUNNELS}) to {eid} has been reached.")
        # Which of the endpoint's names the client dialed: FipsDnsName in FIPS mode.
        via = "FipsDnsName" if host == endpoint["FipsDnsName"] else "DnsName"
        connection.tunnel = (eid, str(ip), port, duration, via, host)
        return None

    def handler(ws):
        eid, ip, port, duration, via, host = ws.tunnel
        # Tests read this line (lab/aws.rs, Lab::eice_tunnels): keep its shape.
        log(f"eice {eid}: tunnel to {ip}:{port} via {via} {host} (max {duration} s)")
        timer = None
        target = None
        try:
            try:
                target = socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT)
                target.settimeout(None)
                # No Nagle on either leg, as a relay that carries SSH should: otherwise
                # every small packet (handshake, greeting) waits ~40 ms for a delayed ACK.
                target.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as err:
                log(f"eice {eid}: {ip}:{port} unreachable: {err}")
                ws.close(CLOSE_UNREACHABLE, f"Failed to connect to {ip}:{port}: {err.strerror or err}")
                return
            timer = threading.Timer(duration, lambda: ws.close(CLOSE_DURATION, f"Tunnel duration exceeded: maxTunnelDuration is {duration} s"))
            timer.daemon = True
            timer.start()

            def target_to_client():
                try:
                    while True:
                        data = target.recv(65536)
                        if not data:
                            ws.close(1000)  # the target closed: a normal end
                            return
                        ws.send(data)
                except (OSError, ConnectionClosed):
                    ws.close(1000)

            pump = threading.Thread(target=target_to_client, daemon=True)
            pump.start()
            try:
                for message in ws:
                    if isinstance(message, str):
                        ws.close(CLOSE_UNSUPPORTED, "Text frames are not supported; send binary frames")
                        break
                    if message:
                        target.sendall(message)
            except (ConnectionClosed, OSError):
                pass
        finally:
            if timer is not None:
                timer.cancel()
            if target is not None:
                try:
                    target.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                target.close()
            tunnels.give_back(eid)
            log(f"eice {eid}: tunnel to {ip}:{port} closed ({ws.close_code} {ws.close_reason!r})")

    server = ws_serve(
        handler,
        c["eice_ip"],
        c["port"],
        ssl=context,
        process_request=process_request,
        compression=None,  # the CRT client refuses a 101 that carries extensions
        max_size=16 * 1024 * 1024,
        server_header=None,
    )
    log(f"eice on wss://{c['eice_ip']}:{c['port']}")
    server.serve_forever()

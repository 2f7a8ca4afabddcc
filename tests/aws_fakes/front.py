"""The AWS front of the lab: the regional AWS API names and the EICE endpoints, on
one process in the lab's `<prefix>-aws` namespace.

    API_IP:443   HTTPS: every API call. SigV4 is verified (botocore recomputes the
                 signature) and refused as AWS refuses it; then
                 - ec2-instance-connect (JSON 1.1, target AWSEC2InstanceConnectService):
                   SendSSHPublicKey, which really installs the key for the lab's sshd
                   (see eic-authorized-keys), and SendSerialConsoleSSHPublicKey;
                 - ec2 Query Create/Describe/DeleteInstanceConnectEndpoint(s), which moto
                   lacks (XML shaped as botocore's ec2 model);
                 - ssm (JSON 1.1, target AmazonSSM): the Session Manager calls
                   (StartSession, ResumeSession, TerminateSession, DescribeSessions,
                   DescribeInstanceInformation), see ssm_gateway.py;
                 - everything else: reverse-proxied, unchanged, to moto_server.
    SSM_IP:443   WSS: the SSM Message Gateway Service (ssmmessages), ssm_gateway.py,
                 with the fake agents' link and its control API beside it.
    EICE_IP:443  WSS: the EC2 Instance Connect Endpoints' data plane (`/openTunnel`),
                 see eice.py.

The client under test reaches both by the real names (ec2.us-east-1.amazonaws.com,
eice-....ec2-instance-connect-endpoint.us-east-1.amazonaws.com), or by their FIPS names
(ec2-fips.us-east-1.amazonaws.com, the endpoint's FipsDnsName): the lab's hosts file maps
them here, and the certificate is signed by the lab CA the client trusts. The log names
the Host of every API call (`api IP host=NAME "POST / HTTP/1.1" 200 -`) and of every
tunnel (`eice ID: tunnel to IP:PORT via DnsName|FipsDnsName NAME ...`), for the tests.

Usage: front.py CONFIG.json (written by the lab, tests/src/lab/aws.rs).
"""

import base64
import datetime
import http.client
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config

import ssm_gateway
from sigv4 import AuthError, Verifier

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def log(message):
    print(f"{datetime.datetime.now().strftime('%H:%M:%S.%f')[:-3]} {message}", file=sys.stderr, flush=True)


def request_id():
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------
# State shared by the API and the EICE server
# ---------------------------------------------------------------------------------------


class Lab:
    """The config, a boto3 EC2 client straight to moto, and the endpoints we own."""

    def __init__(self, config_path):
        with open(config_path) as f:
            self.config = json.load(f)
        c = self.config
        self.region = c["region"]
        self.verifier = Verifier(c["access_key"], c["secret_key"], self.region)
        self.moto_host, self.moto_port = c["moto"].rsplit(":", 1)
        self.moto_port = int(self.moto_port)
        self.ec2 = boto3.client(
            "ec2",
            region_name=self.region,
            endpoint_url=f"http://{c['moto']}",
            aws_access_key_id=c["access_key"],
            aws_secret_access_key=c["secret_key"],
            config=Config(retries={"total_max_attempts": 1}),
        )
        self.lock = threading.Lock()
        self.endpoints = {}  # id -> dict (see create_endpoint)
        if os.path.exists(c["state_file"]):
            with open(c["state_file"]) as f:
                self.endpoints = json.load(f)

    def save(self):
        """Persists the endpoints (so a restarted front keeps them while moto lives)."""
        tmp = self.config["state_file"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.endpoints, f, indent=1)
        os.replace(tmp, self.config["state_file"])

    def add_host_names(self, names, ip):
        """Appends `ip name...` to each lab hosts file that maps AWS names (the laptop's and
        the aws namespace's), replacing the file so that running readers are unaffected."""
        for path in self.config["hosts_files"]:
            with open(path) as f:
                text = f.read()
            line = f"{ip} {' '.join(names)}\n"
            if line in text:
                continue
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text + line)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    def endpoint_by_host(self, host):
        for ep in self.endpoints.values():
            if host in (ep["DnsName"], ep["FipsDnsName"]) and ep["State"] == "create-complete":
                return ep
        return None

    def instance(self, instance_id):
        """The moto instance, or None."""
        try:
            res = self.ec2.describe_instances(InstanceIds=[instance_id])
        except Exception:  # InvalidInstanceID.NotFound / .Malformed
            return None
        for r in res["Reservations"]:
            for i in r["Instances"]:
                return i
        return None


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ---------------------------------------------------------------------------------------
# Error bodies, one per AWS protocol
# ---------------------------------------------------------------------------------------

JSON_SERVICES = {"ec2-instance-connect", "ssm", "ssmmessages"}


def error_response(service, status, code, message):
    """(status, headers, body) the way `service` reports an error."""
    rid = request_id()
    if service in JSON_SERVICES:
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", rid), ("x-amzn-ErrorType", code)], body
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{rid}</RequestID></Response>"
        ).encode()
        return status, [("Content-Type", "text/xml;charset=UTF-8")], body
    body = (
        f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
    ).encode()
    return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body


def auth_error(service, err):
    """How each protocol family refuses a request that fails SigV4 (AWS's codes)."""
    if service == "ec2":
        table = {
            "missing": (401, "AuthFailure", "AWS was not able to validate the provided access credentials"),
            "unknown-key": (401, "AuthFailure", "AWS was not able to validate the provided access credentials"),
            "signature": (403, "SignatureDoesNotMatch", err.message),
            "expired": (400, "RequestExpired", "Request has expired."),
        }
        status, code, message = table.get(err.kind, (400, "IncompleteSignature", err.message))
    elif service in JSON_SERVICES:
        table = {
            "missing": (400, "MissingAuthenticationTokenException", "Missing Authentication Token"),
            "unknown-key": (400, "UnrecognizedClientException", err.message),
            "signature": (400, "InvalidSignatureException", err.message),
            "expired": (400, "InvalidSignatureException", err.message),
        }
        status, code, message = table.get(err.kind, (400, "IncompleteSignatureException", err.message))
    else:
        table = {
            "missing": (403, "MissingAuthenticationToken", "Missing Authentication Token"),
            "unknown-key": (403, "InvalidClientTokenId", err.message),
            "signature": (403, "SignatureDoesNotMatch", err.message),
            "expired": (403, "SignatureDoesNotMatch", err.message),
        }
        status, code, message = table.get(err.kind, (400, "IncompleteSignature", err.message))
    return error_response(service, status, code, message)


# ---------------------------------------------------------------------------------------
# EC2 Instance Connect API (JSON 1.1)
# ---------------------------------------------------------------------------------------

KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
INSTANCE_ID = re.compile(r"^i-[a-f0-9]+$")


def check_public_key(text):
    """Model limits (80-4096 characters) and a key that parses: `type base64 [comment]`
    whose blob starts with the same type string, as OpenSSH would read it."""
    if not 80 <= len(text) <= 4096:
        raise ApiError(400, "InvalidArgsException", "The SSH public key must be between 80 and 4096 characters long.")
    parts = text.split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ApiError(400, "InvalidArgsException", "The SSH public key is not a supported type (ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp*).")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        n = int.from_bytes(blob[:4], "big")
        embedded = blob[4 : 4 + n].decode()
    except Exception:
        embedded = None
    if embedded != parts[0]:
        raise ApiError(400, "InvalidArgsException", "The SSH public key is not valid.")
    return f"{parts[0]} {parts[1]}"


def key_ttl(lab):
    """Seconds a pushed key stays valid: 60 as on AWS, unless the lab's `key-ttl` file
    says otherwise (the aws_lab tests use 3 s to see a key expire)."""
    try:
        with open(lab.config["key_ttl_file"]) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return 60.0


def install_key(lab, private_ip, user, key):
    """Adds `key` for `user` on the instance at `private_ip`: one `EXPIRY KEY` line in
    keys_dir/IP/USER, which eic-authorized-keys (the sshd's AuthorizedKeysCommand) reads.
    Expired lines are dropped on the way."""
    directory = os.path.join(lab.config["keys_dir"], private_ip)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, user)
    now = time.time()
    with lab.lock:
        lines = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    expiry, _, old = line.strip().partition(" ")
                    if old and float(expiry) > now:
                        lines.append(line)
        lines.append(f"{int(now + key_ttl(lab))} {key}\n")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def running_instance(lab, instance_id):
    if not isinstance(instance_id, str) or not INSTANCE_ID.match(instance_id) or not 10 <= len(instance_id) <= 32:
        raise ApiError(400, "InvalidArgsException", "Instance ID is not valid.")
    inst = lab.instance(instance_id)
    if inst is None:
        raise ApiError(400, "EC2InstanceNotFoundException", f"Instance {instance_id} not found.")
    if inst["State"]["Name"] != "running":
        raise ApiError(400, "EC2InstanceStateInvalidException", f"Instance {instance_id} is not in a valid state for this operation ({inst['State']['Name']}).")
    return inst


def send_ssh_public_key(lab, body):
    inst = running_instance(lab, body.get("InstanceId"))
    user = body.get("InstanceOSUser")
    if not isinstance(user, str) or not 1 <= len(user) <= 32:
        raise ApiError(400, "InvalidArgsException", "InstanceOSUser must be 1-32 characters.")
    # The real service cannot see the OS; the lab can, and refuses users that do not
    # exist there, so a typo fails at the API rather than as a silent login failure.
    if user not in lab.config["users"]:
        raise ApiError(400, "InvalidArgsException", f"The OS user {user} does not exist on instance {inst['InstanceId']}.")
    az = body.get("AvailabilityZone")
    if az is not None and az != inst["Placement"]["AvailabilityZone"]:
        raise ApiError(400, "InvalidArgsException", f"Instance {inst['InstanceId']} is not in availability zone {az}.")
    key = check_public_key(body.get("SSHPublicKey", ""))
    install_key(lab, inst["PrivateIpAddress"], user, key)
    log(f"SendSSHPublicKey {inst['InstanceId']} {user} -> {inst['PrivateIpAddress']} ({key_ttl(lab)} s)")
    return {"RequestId": request_id(), "Success": True}


def send_serial_console_ssh_public_key(lab, body):
    inst = running_instance(lab, body.get("InstanceId"))
    if body.get("SerialPort", 0) != 0:
        raise ApiError(400, "InvalidArgsException", "SerialPort must be 0.")
    key = check_public_key(body.get("SSHPublicKey", ""))
    # There is no serial console in the lab; the key is recorded for tests to read.
    path = os.path.join(lab.config["keys_dir"], "serial-console.log")
    with lab.lock, open(path, "a") as f:
        f.write(f"{int(time.time())} {inst['InstanceId']} {key}\n")
    return {"RequestId": request_id(), "Success": True}


EIC_ACTIONS = {
    "SendSSHPublicKey": send_ssh_public_key,
    "SendSerialConsoleSSHPublicKey": send_serial_console_ssh_public_key,
}


# ---------------------------------------------------------------------------------------
# EC2 Query: Instance Connect Endpoints
# ---------------------------------------------------------------------------------------


def query_list(params, prefix):
    """Values of `Prefix.1`, `Prefix.2`, ... in order."""
    out, n = [], 1
    while f"{prefix}.{n}" in params:
        out.append(params[f"{prefix}.{n}"])
        n += 1
    return out


def query_filters(params):
    filters, n = [], 1
    while f"Filter.{n}.Name" in params:
        filters.append((params[f"Filter.{n}.Name"], query_list(params, f"Filter.{n}.Value")))
        n += 1
    return filters


def query_tags(params):
    """TagSpecification.N.{ResourceType, Tag.M.Key, Tag.M.Value} for instance-connect-endpoint."""
    tags, n = [], 1
    while f"TagSpecification.{n}.ResourceType" in params:
        m = 1
        while f"TagSpecification.{n}.Tag.{m}.Key" in params:
            tags.append({"Key": params[f"TagSpecification.{n}.Tag.{m}.Key"], "Value": params.get(f"TagSpecification.{n}.Tag.{m}.Value", "")})
            m += 1
        n += 1
    return tags


def create_endpoint(lab, params):
    subnet_id = params.get("SubnetId")
    if not subnet_id:
        raise ApiError(400, "MissingParameter", "The request must contain the parameter SubnetId")
    try:
        subnet = lab.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    except Exception:
        raise ApiError(400, "InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist") from None
    vpc_id = subnet["VpcId"]
    groups = query_list(params, "SecurityGroupId")
    if not groups:
        default = lab.ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}])
        groups = [g["GroupId"] for g in default["SecurityGroups"]]
    with lab.lock:
        # Quota (AWS, not adjustable): one endpoint per VPC.
        if any(ep["VpcId"] == vpc_id for ep in lab.endpoints.values()):
            raise ApiError(400, "InstanceConnectEndpointQuotaExceeded", f"The maximum number of EC2 Instance Connect Endpoints for VPC {vpc_id} has been reached.")
        eid = "eice-" + secrets.token_hex(9)[:17]
        label = lab.config["eice_dns_label"]
        suffix = f"ec2-instance-connect-endpoint.{lab.region}.amazonaws.com"
        account = lab.config["account_id"]
        ep = {
            "OwnerId": account,
            "InstanceConnectEndpointId": eid,
            "InstanceConnectEndpointArn": f"arn:aws:ec2:{lab.region}:{account}:instance-connect-endpoint/{eid}",
            "State": "create-complete",
            "StateMessage": "",
            "DnsName": f"{eid}.{label}.{suffix}",
            "FipsDnsName": f"{eid}.{label}.fips.{suffix}",
            "NetworkInterfaceIds": ["eni-" + secrets.token_hex(9)[:17]],
            "VpcId": vpc_id,
            "AvailabilityZone": subnet["AvailabilityZone"],
            "CreatedAt": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SubnetId": subnet_id,
            "PreserveClientIp": params.get("PreserveClientIp", "false").lower() == "true",
            "SecurityGroupIds": groups,
            "Tags": query_tags(params),
            "IpAddressType": params.get("IpAddressType", "ipv4"),
            "AvailabilityZoneId": subnet.get("AvailabilityZoneId", ""),
        }
        lab.endpoints[eid] = ep
        lab.save()
    lab.add_host_names([ep["DnsName"], ep["FipsDnsName"]], lab.config["eice_ip"])
    log(f"CreateInstanceConnectEndpoint {eid} in {subnet_id}: {ep['DnsName']}")
    body = endpoint_xml("instanceConnectEndpoint", ep)
    if "ClientToken" in params:
        body += f"<clientToken>{escape(params['ClientToken'])}</clientToken>"
    return "CreateInstanceConnectEndpointResponse", body


def endpoint_xml(tag, ep):
    """One Ec2InstanceConnectEndpoint, element names from botocore's ec2 model."""
    def field(name, value):
        return f"<{name}>{escape(str(value))}</{name}>"

    items = lambda values: "".join(field("item", v) for v in values)  # noqa: E731
    tags = "".join(f"<item><key>{escape(t['Key'])}</key><value>{escape(t['Value'])}</value></item>" for t in ep["Tags"])
    return (
        f"<{tag}>"
        + field("ownerId", ep["OwnerId"])
        + field("instanceConnectEndpointId", ep["InstanceConnectEndpointId"])
        + field("instanceConnectEndpointArn", ep["InstanceConnectEndpointArn"])
        + field("state", ep["State"])
        + field("stateMessage", ep["StateMessage"])
        + field("dnsName", ep["DnsName"])
        + field("fipsDnsName", ep["FipsDnsName"])
        + f"<networkInterfaceIdSet>{items(ep['NetworkInterfaceIds'])}</networkInterfaceIdSet>"
        + field("vpcId", ep["VpcId"])
        + field("availabilityZone", ep["AvailabilityZone"])
        + field("createdAt", ep["CreatedAt"])
        + field("subnetId", ep["SubnetId"])
        + field("preserveClientIp", str(ep["PreserveClientIp"]).lower())
        + f"<securityGroupIdSet>{items(ep['SecurityGroupIds'])}</securityGroupIdSet>"
        + f"<tagSet>{tags}</tagSet>"
        + field("ipAddressType", ep["IpAddressType"])
        + field("availabilityZoneId", ep["AvailabilityZoneId"])
        + f"</{tag}>"
    )


def endpoint_matches(ep, name, values):
    simple = {
        "instance-connect-endpoint-id": ep["InstanceConnectEndpointId"],
        "state": ep["State"],
        "subnet-id": ep["SubnetId"],
        "vpc-id": ep["VpcId"],
        "availability-zone": ep["AvailabilityZone"],
    }
    if name in simple:
        return simple[name] in values
    if name == "tag-key":
        return any(t["Key"] in values for t in ep["Tags"])
    if name.startswith("tag:"):
        return any(t["Key"] == name[4:] and t["Value"] in values for t in ep["Tags"])
    raise ApiError(400, "InvalidParameterValue", f"The filter '{name}' is invalid")


def describe_endpoints(lab, params):
    ids = query_list(params, "InstanceConnectEndpointId")
    with lab.lock:
        eps = sorted(lab.endpoints.values(), key=lambda e: e["CreatedAt"] + e["InstanceConnectEndpointId"])
    for missing in [i for i in ids if i not in {e["InstanceConnectEndpointId"] for e in eps}]:
        raise ApiError(400, "InvalidInstanceConnectEndpointId.NotFound", f"The instanceConnectEndpoint ID '{missing}' does not exist")
    if ids:
        eps = [e for e in eps if e["InstanceConnectEndpointId"] in ids]
    for name, values in query_filters(params):
        eps = [e for e in eps if endpoint_matches(e, name, values)]
    # Pagination: NextToken is the offset, MaxResults 1..50.
    start = int(params.get("NextToken", "0") or 0)
    size = int(params.get("MaxResults", "50"))
    if not 1 <= size <= 50:
        raise ApiError(400, "InvalidParameterValue", "MaxResults must be between 1 and 50")
    page = eps[start : start + size]
    body = "<instanceConnectEndpointSet>" + "".join(endpoint_xml("item", e) for e in page) + "</instanceConnectEndpointSet>"
    if start + size < len(eps):
        body += f"<nextToken>{start + size}</nextToken>"
    return "DescribeInstanceConnectEndpointsResponse", body


def delete_endpoint(lab, params):
    eid = params.get("InstanceConnectEndpointId", "")
    with lab.lock:
        ep = lab.endpoints.pop(eid, None)
        if ep is None:
            raise ApiError(400, "InvalidInstanceConnectEndpointId.NotFound", f"The instanceConnectEndpoint ID '{eid}' does not exist")
        lab.save()
    ep = dict(ep, State="delete-in-progress")
    return "DeleteInstanceConnectEndpointResponse", endpoint_xml("instanceConnectEndpoint", ep)


EC2_ACTIONS = {
    "CreateInstanceConnectEndpoint": create_endpoint,
    "DescribeInstanceConnectEndpoints": describe_endpoints,
    "DeleteInstanceConnectEndpoint": delete_endpoint,
}


# ---------------------------------------------------------------------------------------
# The HTTPS server
# ---------------------------------------------------------------------------------------


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lab = None  # set by main
    ssm = None  # the SSM gateway (ssm_gateway.Gateway), set by main

    def log_message(self, fmt, *args):
        # The Host says which name the client dialed: `ec2.<region>.amazonaws.com`, or
        # `ec2-fips.<region>.amazonaws.com` in FIPS mode (tests read it, see lab/aws.rs).
        headers = getattr(self, "headers", None)
        host = ((headers.get("Host") if headers is not None else None) or "-").split(":")[0]
        log(f"api {self.client_address[0]} host={host} {fmt % args}")

    def send(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("Host") or "").split(":")[0]
        # Before the signature is read, the Host name says which service is meant (its
        # FIPS name, `<service>-fips.<region>.amazonaws.com`, is the same service).
        service = host.split(".")[0].removesuffix("-fips") if host.endswith(".amazonaws.com") else "ec2"
        try:
            service = self.lab.verifier.verify_headers(self.command, self.headers.get("Host", ""), self.path, self.headers.items(), body)
        except AuthError as err:
            log(f"api refused ({err.kind}): {err.message}")
            return self.send(*auth_error(service, err))
        try:
            target = self.headers.get("X-Amz-Target", "")
            if service == "ec2-instance-connect" and target.startswith("AWSEC2InstanceConnectService."):
                action = EIC_ACTIONS.get(target.split(".", 1)[1])
                if action is None:
                    raise ApiError(400, "UnknownOperationException", f"Unknown operation {target}")
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    raise ApiError(400, "SerializationException", "Body is not valid JSON") from None
                result = json.dumps(action(self.lab, request)).encode()
                return self.send(200, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id())], result)
            if service == "ssm" and target.startswith("AmazonSSM.") and self.ssm is not None:
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    raise ApiError(400, "SerializationException", "Body is not valid JSON") from None
                try:
                    answer = self.ssm.api(target.split(".", 1)[1], request)
                except ssm_gateway.ApiError as err:
                    raise ApiError(err.status, err.code, err.message) from None
                if answer is not None:
                    return self.send(200, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id())], json.dumps(answer).encode())
            if service == "ec2":
                params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
                params.update({k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()})
                action = EC2_ACTIONS.get(params.get("Action", ""))
                if action is not None:
                    name, inner = action(self.lab, params)
                    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<{name} xmlns="{EC2_NS}"><requestId>{request_id()}</requestId>{inner}</{name}>'
                    return self.send(200, [("Content-Type", "text/xml;charset=UTF-8")], xml.encode())
        except ApiError as err:
            log(f"api error {err.code}: {err.message}")
            return self.send(*error_response(service, err.status, err.code, err.message))
        return self.proxy(body)

    def proxy(self, body):
        """Forwards the request unchanged to moto_server and its answer back."""
        conn = http.client.HTTPConnection(self.lab.moto_host, self.lab.moto_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as err:
            return self.send(*error_response("ec2", 503, "ServiceUnavailable", f"moto is not answering: {err}"))
        finally:
            conn.close()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date")]
        self.send(resp.status, out, data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def get_request(self):
        sock, addr = super().get_request()
        # The handshake happens in the handler thread (do_handshake_on_connect).
        return self.context.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request, client_address):
        log(f"api connection from {client_address[0]}: {sys.exc_info()[1]!r}")


def tls_context(config):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets. With them, websockets' sync server (which polls the raw
    # socket) now and then never saw a request that had arrived right behind the client's
    # Finished: it waited out its 10 s open_timeout and closed without an answer. Measured
    # in the lab under load: about one upgrade in 500; none in 1,600 without tickets.
    # Nothing in aws-hop depends on resumption (it dials each stream afresh).
    ctx.num_tickets = 0
    ctx.load_cert_chain(config["cert"], config["key"])
    return ctx


def main():
    lab = Lab(sys.argv[1])
    c = lab.config
    ApiHandler.lab = lab
    ApiHandler.ssm = ssm_gateway.Gateway(lab, log)
    api = TlsServer((c["api_ip"], c["port"]), ApiHandler, tls_context(c))
    threading.Thread(target=api.serve_forever, name="api", daemon=True).start()
    log(f"api on https://{c['api_ip']}:{c['port']} -> moto http://{c['moto']}")
    ApiHandler.ssm.serve(tls_context(c))
    import eice  # after the API is up; imports websockets

    eice.serve(lab, tls_context(c), log)


if __name__ == "__main__":
    main()

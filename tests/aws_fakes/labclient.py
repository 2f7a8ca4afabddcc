"""Python clients for the aws_lab tests: boto3 and a websockets EICE client.

    labclient.py COMMAND ARGS...    (prints one JSON object on stdout)

It runs as a client on the laptop (see Lab::aws_client): the real AWS names resolve
to the fakes through the lab hosts file, TLS is checked against the lab CA
(AWS_CA_BUNDLE), and the credentials and region come from the environment. Nothing
here knows the fakes' addresses.

Commands:
  instance NAME                     DescribeInstances by tag:Name
  endpoints                         DescribeInstanceConnectEndpoints
  call-with-keys AKID SECRET        DescribeInstances signed with other keys
  send-key INSTANCE_ID USER PUBFILE SendSSHPublicKey
  tunnel DNS EID IP PORT [AGE]      presign (X-Amz-Date AGE seconds ago, default 0),
                                    open wss://DNS/openTunnel, read the first bytes
"""

import datetime
import json
import os
import ssl
import sys

import boto3
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

CONFIG = Config(retries={"total_max_attempts": 1})


def out(value):
    print(json.dumps(value))


def session(**keys):
    # botocore reads AWS_DEFAULT_REGION, not AWS_REGION (which the Rust SDK reads).
    return boto3.session.Session(region_name=os.environ["AWS_REGION"], **keys)


def client(service, **keys):
    return session(**keys).client(service, config=CONFIG)


def error(err):
    return {"ok": False, "status": err.response["ResponseMetadata"]["HTTPStatusCode"], "code": err.response["Error"]["Code"], "message": err.response["Error"].get("Message", "")}


def instance(name):
    res = client("ec2").describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
    found = [i for r in res["Reservations"] for i in r["Instances"]]
    out([{"id": i["InstanceId"], "ip": i.get("PrivateIpAddress"), "public_ip": i.get("PublicIpAddress"), "state": i["State"]["Name"], "subnet": i.get("SubnetId"), "vpc": i.get("VpcId")} for i in found])


def endpoints():
    res = client("ec2").describe_instance_connect_endpoints(Filters=[{"Name": "state", "Values": ["create-complete"]}])
    out([{k: e.get(k) for k in ("InstanceConnectEndpointId", "DnsName", "FipsDnsName", "State", "SubnetId", "VpcId")} for e in res["InstanceConnectEndpoints"]])


def call_with_keys(akid, secret):
    ec2 = client("ec2", aws_access_key_id=akid, aws_secret_access_key=secret)
    try:
        ec2.describe_instances()
        out({"ok": True})
    except ClientError as err:
        out(error(err))


def send_key(instance_id, user, pubfile):
    with open(pubfile) as f:
        key = f.read().strip()
    try:
        res = client("ec2-instance-connect").send_ssh_public_key(InstanceId=instance_id, InstanceOSUser=user, SSHPublicKey=key)
        out({"ok": True, "success": res["Success"]})
    except ClientError as err:
        out(error(err))


def presign(dns, params, age):
    """The AWS CLI's presign (eice.md 1.3-1.4), with botocore: SigV4 query auth, 60 s."""
    creds = session().get_credentials().get_frozen_credentials()
    auth = SigV4QueryAuth(creds, "ec2-instance-connect", os.environ["AWS_REGION"], expires=60)
    request = AWSRequest(method="GET", url=f"wss://{dns}/openTunnel", params=params)
    # add_auth, with a chosen X-Amz-Date instead of now.
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
    request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    return request.url


def tunnel(dns, eid, ip, port, age="0"):
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    url = presign(dns, {"instanceConnectEndpointId": eid, "remotePort": port, "privateIpAddress": ip}, int(age))
    context = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    try:
        ws = connect(url, ssl=context, compression=None, open_timeout=15)
    except InvalidStatus as err:
        body = err.response.body.decode(errors="replace")
        return out({"upgraded": False, "status": err.response.status_code, "body": json.loads(body) if body.startswith("{") else body})
    result = {"upgraded": True, "status": 101, "data": ""}
    with ws:
        try:
            data = ws.recv(timeout=15)
            result["data"] = data.decode(errors="replace") if isinstance(data, bytes) else f"TEXT:{data}"
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            result["close_code"] = rcvd.code if rcvd else None
            result["close_reason"] = rcvd.reason if rcvd else None
    out(result)


COMMANDS = {"instance": instance, "endpoints": endpoints, "call-with-keys": call_with_keys, "send-key": send_key, "tunnel": tunnel}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])

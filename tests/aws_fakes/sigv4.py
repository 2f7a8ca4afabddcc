"""SigV4 verification for the fakes, with botocore's own signer recomputing the signature.

Two forms, as AWS accepts them:

- header auth (`Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
  Signature=...` plus `X-Amz-Date`): every API call;
- query auth (a presigned URL: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
  `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature` in the query): the EICE
  `/openTunnel` WebSocket URL (protocols/eice.md 1.4).

The client code under test (aws-hop, Rust) computes signatures with its own code; this
module rebuilds the canonical request from what arrived on the wire and lets botocore
sign it again with the lab's secret. A match means both sides agree on SigV4, not that
this module agrees with itself.
"""

import datetime
import hashlib
import hmac
from urllib.parse import parse_qsl

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP = "%Y%m%dT%H%M%SZ"
# AWS refuses header-signed requests whose X-Amz-Date is more than 15 minutes off.
HEADER_SKEW = datetime.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AuthError(Exception):
    """A request AWS would refuse. `kind` says which way (the caller maps it to the
    service's own error code): `missing`, `malformed`, `unknown-key`, `signature`,
    `expired`, `future`, `scope`."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


class Verifier:
    """Checks signatures made with one access key pair in one region."""

    def __init__(self, access_key, secret_key, region):
        self.access_key = access_key
        self.credentials = Credentials(access_key, secret_key)
        self.region = region

    # -- shared ---------------------------------------------------------------------

    def _signature(self, service, region, method, url, headers, body, timestamp):
        """botocore's signature over the request as given."""
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        request.context["timestamp"] = timestamp
        signer = SigV4Auth(self.credentials, service, region)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        return signer.signature(string_to_sign, request)

    def _check_credential(self, credential, timestamp):
        """`AKID/yyyymmdd/region/service/aws4_request`: returns (region, service)."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise AuthError("malformed", f"Credential should be scoped to a valid region. Got: {credential}")
        akid, date, region, service, _ = parts
        if akid != self.access_key:
            raise AuthError("unknown-key", "The security token included in the request is invalid.")
        if date != timestamp[:8]:
            raise AuthError("scope", f"Credential should be scoped to a valid date: {date} != {timestamp[:8]}")
        if region != self.region:
            raise AuthError("scope", f"Credential should be scoped to a valid region. Got: {region}; expected {self.region}")
        return region, service

    @staticmethod
    def _parse_time(text):
        try:
            return datetime.datetime.strptime(text, TIMESTAMP).replace(tzinfo=datetime.timezone.utc)
        except (TypeError, ValueError):
            raise AuthError("malformed", f"X-Amz-Date must be in ISO8601 basic format, got {text!r}") from None

    # -- header auth ----------------------------------------------------------------

    def verify_headers(self, method, host, path_and_query, headers, body, now=None):
        """Verifies a header-signed request; returns the signing service name.

        `headers` is a list of (name, value) as received; `path_and_query` the raw
        request target; `body` bytes."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        lower = {}
        for name, value in headers:
            lower.setdefault(name.lower(), []).append(value)
        auth = (lower.get("authorization") or [""])[0]
        if not auth.startswith(ALGORITHM + " "):
            raise AuthError("missing", "Missing Authentication Token")
        fields = {}
        for item in auth[len(ALGORITHM) + 1 :].split(","):
            key, _, value = item.strip().partition("=")
            fields[key] = value
        try:
            credential = fields["Credential"]
            signed = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except KeyError as missing:
            raise AuthError("malformed", f"Authorization header requires '{missing.args[0]}' parameter.") from None
        timestamp = (lower.get("x-amz-date") or [""])[0]
        when = self._parse_time(timestamp)
        region, service = self._check_credential(credential, timestamp)
        if "host" not in signed:
            raise AuthError("malformed", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        # The body hash, when the client states it, must be the body's.
        stated = (lower.get("x-amz-content-sha256") or [None])[0]
        if stated not in (None, "UNSIGNED-PAYLOAD") and stated != hashlib.sha256(body).hexdigest():
            raise AuthError("signature", "The provided 'x-amz-content-sha256' header does not match what was computed.")
        signed_headers = [(name, ",".join(lower.get(name, []))) for name in signed]
        expected = self._signature(
            service, region, method, f"https://{host}{path_and_query}", dict(signed_headers), body, timestamp
        )
        if not hmac.compare_digest(expected, signature):
            raise AuthError(
                "signature",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            )
        # Checked after the signature, as AWS does: a bad signature says so first.
        if abs(now - when) > HEADER_SKEW:
            raise AuthError(
                "expired",
                f"Signature expired: {timestamp} is now earlier than "
                f"{(now - HEADER_SKEW).strftime(TIMESTAMP)} ({now.strftime(TIMESTAMP)} - 15 min.)",
            )
        return service

    # -- query auth (presigned URL) -----------------------------------------------------

    def verify_presigned(self, service, host, path, query, max_expires=None, now=None):
        """Verifies a presigned GET `path?query` for `host` (eice.md 1.4). Returns the
        decoded parameters (without the X-Amz-* ones).

        Rules: algorithm AWS4-HMAC-SHA256; credential scope `<key>/<date>/<region>/
        <service>/aws4_request`; signed headers exactly `host`; payload hash = SHA-256 of
        the empty string; valid from X-Amz-Date to X-Amz-Date + X-Amz-Expires, and
        X-Amz-Expires at most `max_expires` when given."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
        params = {}
        for key, value in pairs:
            if key in params:
                raise AuthError("malformed", f"Duplicate query parameter {key}")
            params[key] = value
        required = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"]
        absent = [k for k in required if k not in params]
        if absent:
            raise AuthError("missing", f"Missing required query parameters: {', '.join(absent)}")
        if params["X-Amz-Algorithm"] != ALGORITHM:
            raise AuthError("malformed", f"Unsupported algorithm {params['X-Amz-Algorithm']}")
        timestamp = params["X-Amz-Date"]
        when = self._parse_time(timestamp)
        region, signed_service = self._check_credential(params["X-Amz-Credential"], timestamp)
        if signed_service != service:
            raise AuthError("scope", f"Credential should be scoped to correct service: '{service}'.")
        if params["X-Amz-SignedHeaders"] != "host":
            raise AuthError("malformed", f"X-Amz-SignedHeaders must be 'host', got {params['X-Amz-SignedHeaders']!r}")
        try:
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise AuthError("malformed", "X-Amz-Expires must be an integer") from None
        if expires < 1 or (max_expires is not None and expires > max_expires):
            raise AuthError("malformed", f"X-Amz-Expires must be between 1 and {max_expires}, got {expires}")
        # Canonical query as AWS computes it: decode, then re-encode each key and value
        # per RFC 3986 (only A-Z a-z 0-9 - . _ ~ unescaped), sort; X-Amz-Signature left out.
        canonical = "&".join(
            f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs if k != "X-Amz-Signature"
        )
        # A wss:// URL makes botocore hash the (empty) payload instead of UNSIGNED-PAYLOAD,
        # as the AWS CLI's presign does.
        expected = self._signature(signed_service, region, "GET", f"wss://{host}{path}?{canonical}", {"host": host}, b"", timestamp)
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            raise AuthError(
                "signature",
                "The request signature we calculated does not match the signature you provided.",
            )
        # A little leeway for clock steps; AWS's own is not documented.
        if when > now + datetime.timedelta(seconds=5):
            raise AuthError("future", f"Request is not yet valid: X-Amz-Date {timestamp} is in the future")
        if now > when + datetime.timedelta(seconds=expires):
            raise AuthError("expired", f"Request has expired: X-Amz-Date {timestamp} + {expires} s is before {now.strftime(TIMESTAMP)}")
        return {k: v for k, v in params.items() if not k.startswith("X-Amz-")}


def _self_test():
    """The verified test vector of protocols/eice.md 1.4 (from the AWS CLI's tests)."""
    v = Verifier("access_key", "secret_key", "us-west-2")
    host = "eice-123.ec2-instance-connect-endpoint.us-west-2.amazonaws.com"
    query = (
        "instanceConnectEndpointId=eice-123&remotePort=22&privateIpAddress=10.0.0.0&maxTunnelDuration=1"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=access_key%2F20200101%2Fus-west-2%2Fec2-instance-connect%2Faws4_request"
        "&X-Amz-Date=20200101T010101Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=3a56740422a5b9aebd22d860b7a30c729e459a6f71a83bc0de3a2b44b7353f28"
    )
    at = datetime.datetime(2020, 1, 1, 1, 1, 30, tzinfo=datetime.timezone.utc)
    params = v.verify_presigned("ec2-instance-connect", host, "/openTunnel", query, max_expires=60, now=at)
    assert params["remotePort"] == "22", params
    try:
        v.verify_presigned("ec2-instance-connect", host, "/openTunnel", query.replace("3a56", "3a57"), now=at)
    except AuthError as e:
        assert e.kind == "signature"
    else:
        raise AssertionError("a bad signature passed")
    print("sigv4 self-test: ok")


if __name__ == "__main__":
    _self_test()

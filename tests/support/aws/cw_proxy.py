#!/usr/bin/env python3
"""CloudWatch test peer: Smithy RPC v2 CBOR in front, moto behind.

The current aws-sdk-cloudwatch speaks Smithy RPC v2 CBOR
(POST /service/GraniteServiceVersion20100801/operation/<Op>, Content-Type
application/cbor, smithy-protocol: rpc-v2-cbor). moto answers that with 404,
but moto 5.x does serve CloudWatch over AWS JSON 1.0 (POST / with
X-Amz-Target: GraniteServiceVersion20100801.<Op>). This proxy translates one
into the other, typed by botocore's `cloudwatch` service model, so that moto
keeps the CloudWatch semantics (storage, statistics, validation):

  request   CBOR -> JSON   tag-1 timestamps -> epoch seconds, byte strings ->
                           base64; Authorization and X-Amz-Date passed through
                           (moto picks the service from the SigV4 credential
                           scope, which must name `monitoring`)
  answer    JSON -> CBOR   timestamps -> tag 1 over a double, doubles as CBOR
                           floats, integers as CBOR integers (what the Rust
                           decoder requires); no body when the operation has no
                           output; errors -> {"__type": <absolute shape id>,
                           "message": ...} with moto's status and its
                           x-amzn-query-error header (CloudWatch is
                           awsQueryCompatible: SDKs take the error code there)

Test hooks, on the same port:
  GET  /_proxy/stats  {"PutMetricData": 3, ..., "failed": {"PutMetricData": 2}}
                      top-level keys: calls forwarded to moto, per operation
                      (moto's own error answers included); "failed": calls
                      refused by fault injection
  POST /_proxy/fail   {"count": N, "status": 503, "type": "ServiceUnavailable"}
                      fails the next N calls; {"mode": "down"} fails every call
                      until healed ("status", "type", "message" optional)
  POST /_proxy/heal   clears any injected fault

Run (Python from the test venv, which has botocore and cbor2):
  "$VENV/bin/python" tests/support/cw_proxy.py --port 0 --moto http://127.0.0.1:5000
It prints `LISTENING <port>` on stdout once it accepts connections; point
AWS_ENDPOINT_URL_CLOUDWATCH at http://127.0.0.1:<port>.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import gzip
import http.client
import json
import re
import sys
import threading
import urllib.parse
import zlib
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import cbor2
from botocore.model import OperationModel, Shape

SERVICE_NAME = "GraniteServiceVersion20100801"
# CloudWatch's Smithy namespace: rpcv2Cbor errors carry absolute shape ids.
SHAPE_NAMESPACE = "com.amazonaws.cloudwatch"
# `{prefix?}/service/{serviceName}/operation/{operationName}`; a server also
# accepts the absolute service id with `#` written as `.`.
OPERATION_PATH = re.compile(
    rf"^(?:/.*)?/service/(?:{re.escape(SHAPE_NAMESPACE)}\.)?{SERVICE_NAME}"
    r"/operation/(?P<operation>[A-Za-z0-9]+)$"
)
PROTOCOL_HEADER = "smithy-protocol"
PROTOCOL = "rpc-v2-cbor"
CBOR_TYPE = "application/cbor"
QUERY_ERROR_HEADER = "x-amzn-query-error"
# Headers that moto reads from a signed request; everything else stays here.
FORWARDED_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
MOTO_TIMEOUT_SECONDS = 30


class ProtocolError(Exception):
    """A request this proxy refuses before it reaches moto."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


@dataclass
class Answer:
    """One HTTP answer in the rpcv2Cbor protocol."""

    status: int
    body: bytes | None  # None: no body and no Content-Type (Unit output)
    headers: dict[str, str] = field(default_factory=dict)


def error_answer(
    status: int, error_type: str, message: str, query_error: str | None = None
) -> Answer:
    """A CBOR error body; `error_type` is a bare name or an absolute shape id."""
    name = error_type.rsplit("#", 1)[-1]
    body = cbor2.dumps({"__type": f"{SHAPE_NAMESPACE}#{name}", "message": message})
    if query_error is None:
        query_error = f"{name};{'Receiver' if status >= 500 else 'Sender'}"
    return Answer(status, body, {QUERY_ERROR_HEADER: query_error})


def epoch_seconds(value: Any) -> float:
    """A timestamp from either side: a datetime (cbor2's reading of tag 1) or a
    number (an untagged CBOR number, or moto's JSON epoch seconds)."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return float(value)


class Translator:
    """Converts operation inputs to AWS JSON and outputs to CBOR by the model."""

    def __init__(self) -> None:
        self.model = botocore.session.get_session().get_service_model("cloudwatch")

    def operation(self, name: str) -> OperationModel | None:
        if name not in self.model.operation_names:
            return None
        return self.model.operation_model(name)

    def request_to_json(self, operation: OperationModel, body: bytes) -> bytes:
        """The CBOR input document as an AWS JSON 1.0 body.

        NaN and infinities go on as JSON's NaN/Infinity literals, which moto's
        Python parser reads, so moto's own validation answers them."""
        try:
            document = cbor2.loads(body) if body else {}
        except (cbor2.CBORDecodeError, ValueError) as err:
            raise ProtocolError(400, "SerializationException", f"bad CBOR body: {err}") from err
        if not isinstance(document, dict):
            raise ProtocolError(400, "SerializationException", "input is not a CBOR map")
        shape = operation.input_shape
        try:
            converted = self._to_json(shape, document) if shape is not None else {}
        except (AttributeError, TypeError, ValueError) as err:
            message = f"input does not fit the {operation.name} model: {err}"
            raise ProtocolError(400, "SerializationException", message) from err
        return json.dumps(converted).encode()

    def response_to_cbor(self, operation: OperationModel, body: bytes) -> bytes | None:
        shape = operation.output_shape
        if shape is None:
            return None
        document = json.loads(body) if body.strip() else {}
        encoded: bytes = cbor2.dumps(self._to_cbor(shape, document))
        return encoded

    def _to_json(self, shape: Shape, value: Any) -> Any:
        kind = shape.type_name
        if kind == "structure":
            # Members the model does not know are dropped: moto reads the same model.
            return {
                name: self._to_json(shape.members[name], member)
                for name, member in value.items()
                if name in shape.members and member is not None
            }
        if kind == "list":
            return [self._to_json(shape.member, item) for item in value]
        if kind == "map":
            return {key: self._to_json(shape.value, item) for key, item in value.items()}
        if kind == "timestamp":
            return epoch_seconds(value)
        if kind == "blob":
            return base64.b64encode(value).decode()
        return value

    def _to_cbor(self, shape: Shape, value: Any) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return {
                name: self._to_cbor(shape.members[name], member)
                for name, member in value.items()
                if name in shape.members and member is not None
            }
        if kind == "list":
            return [self._to_cbor(shape.member, item) for item in value]
        if kind == "map":
            return {key: self._to_cbor(shape.value, item) for key, item in value.items()}
        if kind == "timestamp":
            return cbor2.CBORTag(1, epoch_seconds(value))
        if kind in ("double", "float"):
            return float(value)
        if kind in ("integer", "long"):
            return int(value)
        if kind == "blob":
            return base64.b64decode(value)
        return value


@dataclass
class Fault:
    status: int = 503
    error_type: str = "ServiceUnavailable"
    message: str = "injected by cw_proxy"
    remaining: int | None = None  # None: down until healed


class State:
    """Call counters and the injected fault, shared by the handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forwarded: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._fault: Fault | None = None

    def take_fault(self, operation: str) -> Fault | None:
        """The fault this call gets, if any (counting it); else counts nothing."""
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            self._failed[operation] += 1
            return fault

    def count_forwarded(self, operation: str) -> None:
        with self._lock:
            self._forwarded[operation] += 1

    def set_fault(self, fault: Fault | None) -> None:
        with self._lock:
            self._fault = fault

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {**self._forwarded, "failed": dict(self._failed)}


def parse_fault(body: bytes) -> Fault:
    """The fault described by a POST /_proxy/fail body."""
    spec = json.loads(body or b"{}")
    if not isinstance(spec, dict):
        raise ValueError("expected a JSON object")
    fault = Fault(
        status=int(spec.get("status", 503)),
        error_type=str(spec.get("type", "ServiceUnavailable")),
        message=str(spec.get("message", "injected by cw_proxy")),
    )
    if not 400 <= fault.status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    if spec.get("mode") == "down":
        return fault
    if "mode" in spec:
        raise ValueError('"mode" can only be "down"')
    fault.remaining = int(spec.get("count", 1))
    if fault.remaining < 1:
        raise ValueError('"count" must be at least 1')
    return fault


class Proxy:
    """Forwards one translated call to moto and translates the answer back."""

    def __init__(self, moto_url: str) -> None:
        url = urllib.parse.urlsplit(moto_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"--moto must be http://HOST:PORT, not {moto_url!r}")
        self.moto_host = url.hostname
        self.moto_port = url.port or 80
        self.translator = Translator()
        self.state = State()

    def call(self, path: str, headers: Message, body: bytes) -> Answer:
        match = OPERATION_PATH.match(urllib.parse.urlsplit(path).path)
        if match is None:
            return error_answer(404, "UnknownOperationException", f"no operation at {path}")
        operation = self.translator.operation(match["operation"])
        if operation is None:
            return error_answer(
                404,
                "UnknownOperationException",
                f"CloudWatch has no operation {match['operation']}",
            )
        try:
            check_protocol(headers)
            json_body = self.translator.request_to_json(operation, body)
        except ProtocolError as err:
            return error_answer(err.status, err.error_type, err.message)

        fault = self.state.take_fault(operation.name)
        if fault is not None:
            return error_answer(fault.status, fault.error_type, fault.message)
        self.state.count_forwarded(operation.name)
        try:
            status, moto_headers, moto_body = self._post_to_moto(operation.name, headers, json_body)
        except OSError as err:
            return error_answer(502, "InternalFailure", f"moto did not answer: {err}")
        passed = {
            name.lower(): value
            for name, value in moto_headers.items()
            if name.lower() in ("x-amzn-requestid", QUERY_ERROR_HEADER)
        }
        if status == 200:
            try:
                return Answer(200, self.translator.response_to_cbor(operation, moto_body), passed)
            except (AttributeError, TypeError, ValueError) as err:
                message = f"moto's {operation.name} answer does not fit the model: {err}"
                return error_answer(502, "InternalFailure", message)
        error_type, message = moto_error(status, moto_body)
        answer = error_answer(status, error_type, message, passed.get(QUERY_ERROR_HEADER))
        answer.headers.update(passed)
        return answer

    def _post_to_moto(
        self, operation: str, headers: Message, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        forward = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
        forward["Content-Type"] = "application/x-amz-json-1.0"
        forward["X-Amz-Target"] = f"{SERVICE_NAME}.{operation}"
        connection = http.client.HTTPConnection(
            self.moto_host, self.moto_port, timeout=MOTO_TIMEOUT_SECONDS
        )
        try:
            connection.request("POST", "/", body=body, headers=forward)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def check_protocol(headers: Message) -> None:
    """Refuses what the rpcv2Cbor spec calls malformed, and unsigned calls."""
    if headers.get(PROTOCOL_HEADER) != PROTOCOL:
        raise ProtocolError(
            400, "SerializationException", f"missing `{PROTOCOL_HEADER}: {PROTOCOL}`"
        )
    if "X-Amz-Target" in headers or "X-Amzn-Target" in headers:
        raise ProtocolError(400, "SerializationException", "rpcv2Cbor forbids X-Amz-Target")
    if "Authorization" not in headers:
        # moto routes by the SigV4 credential scope; AWS refuses unsigned calls too.
        raise ProtocolError(403, "MissingAuthenticationToken", "request is not signed")


def moto_error(status: int, body: bytes) -> tuple[str, str]:
    """The error type and message of a moto error answer (JSON, or not)."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and "__type" in document:
        message = document.get("message", document.get("Message", ""))
        return str(document["__type"]), str(message)
    text = body.decode(errors="replace").strip()[:300]
    return ("InternalFailure" if status >= 500 else "ValidationError"), f"moto: {text}"


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the SDK's connection pool expects; also answers Expect: 100-continue.
    protocol_version = "HTTP/1.1"
    server_version = "cw_proxy"
    proxy: Proxy  # set by serve()

    def do_GET(self) -> None:
        if self.path == "/_proxy/stats":
            self._send_json(200, self.proxy.state.stats())
        else:
            self._send_json(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError, EOFError, zlib.error) as err:
            if self.path.startswith("/_proxy/"):
                self._send_json(400, {"error": f"unreadable body: {err}"})
            else:
                self._send_cbor(error_answer(400, "SerializationException", f"bad body: {err}"))
            return
        if self.path == "/_proxy/fail":
            try:
                self.proxy.state.set_fault(parse_fault(body))
            except ValueError as err:
                self._send_json(400, {"error": str(err)})
                return
            self._send_json(200, {"ok": True})
        elif self.path == "/_proxy/heal":
            self.proxy.state.set_fault(None)
            self._send_json(200, {"ok": True})
        else:
            self._send_cbor(self.proxy.call(self.path, self.headers, body))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            # PutMetricData carries @requestCompression(gzip): SDKs gzip large bodies.
            body = gzip.decompress(body)
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send_cbor(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header(PROTOCOL_HEADER, PROTOCOL)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        body = answer.body or b""
        if answer.body is not None:
            self.send_header("Content-Type", CBOR_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(host: str, port: int, moto_url: str) -> None:
    Handler.proxy = Proxy(moto_url)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--moto", required=True, help="moto_server URL, http://127.0.0.1:PORT")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port, args.moto)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Self-test of tests/support/cw_proxy.py, the CloudWatch RPC v2 CBOR test peer.

Starts a private moto_server (from the venv this interpreter belongs to) and
the proxy on free loopback ports, then speaks CBOR to the proxy the way
aws-sdk-cloudwatch (aws-smithy-cbor) does — structures as indefinite-length
maps, doubles as 64-bit floats, timestamps as tag 1 over a 64-bit float,
SigV4-signed for the `monitoring` service — and checks the round trip through
moto: statistic sets read back with their SampleCount/Sum/Minimum/Maximum,
dimensions and timestamp; gzipped and chunked bodies; CBOR error answers
with `__type`; fault injection; call counting. Answers are decoded both raw (cbor2, to check
the exact encoding) and with botocore's own rpcv2Cbor parser (an SDK's view).

Run:   "$VENV/bin/python" tests/support/cw_proxy_selftest.py
       (VENV defaults to /opt/diskguard-test-venv; scripts/test-deps.sh makes it)
Ends with `N passed, M failed`; exits non-zero on any failure. moto and the
proxy are stopped on every exit path.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

PROXY_SCRIPT = Path(__file__).with_name("cw_proxy.py")
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
REGION = "us-east-1"
CREDENTIALS = Credentials("testing", "testing")
SERVICE_PATH = "/service/GraniteServiceVersion20100801/operation"
NAMESPACE = "DiskGuard"
CLUSTER = "selftest"
INSTANCE = "i-0123456789abcdef0"
STARTUP_TIMEOUT_SECONDS = 30
MODEL = botocore.session.get_session().get_service_model("cloudwatch")

# One whole minute, some minutes back: a 60 s period bucket starts exactly on it.
MINUTE = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
MINUTE -= datetime.timedelta(minutes=10)


# --- CBOR as aws-smithy-cbor writes it -------------------------------------------------------


def _head(major: int, length: int) -> bytes:
    """A CBOR initial byte (+ length) for a definite-length item."""
    if length < 24:
        return bytes([major << 5 | length])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if length < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, length)
    raise ValueError("length too large for CBOR")


def _double(value: float) -> bytes:
    return b"\xfb" + struct.pack(">d", value)


def smithy_rs_cbor(value: Any) -> bytes:
    """Structures as indefinite-length maps (begin_map … end), lists as definite
    arrays, every float as a 64-bit double, timestamps as tag 1 over a double."""
    if isinstance(value, dict):
        pairs = b"".join(cbor2.dumps(key) + smithy_rs_cbor(item) for key, item in value.items())
        return b"\xbf" + pairs + b"\xff"
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(smithy_rs_cbor(item) for item in value)
    if isinstance(value, datetime.datetime):
        return b"\xc1" + _double(value.timestamp())
    if isinstance(value, float):
        return _double(value)
    encoded: bytes = cbor2.dumps(value)  # text, integers, booleans, byte strings
    return encoded


# --- the peers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server not answering on {port}: {log.read_text()[-2000:]}")


def read_listening_line(process: subprocess.Popen[bytes], log: Path) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("LISTENING "):
        raise RuntimeError(f"proxy did not start ({line!r}): {log.read_text()[-2000:]}")
    return int(line.split()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def peers(logs: Path) -> Iterator[int]:
    """moto_server and the proxy; yields the proxy's port, stops both on exit."""
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    try:
        moto_port = free_port()
        moto_log = logs / "moto.log"
        with moto_log.open("wb") as out:  # the child keeps its own copy of the descriptor
            moto = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started.append(moto)
        wait_for_http(moto_port, moto, moto_log)
        proxy_log = logs / "proxy.log"
        command = [sys.executable, str(PROXY_SCRIPT), "--port", "0"]
        command += ["--moto", f"http://127.0.0.1:{moto_port}"]
        with proxy_log.open("wb") as err:
            proxy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        started.append(proxy)
        yield read_listening_line(proxy, proxy_log)
    finally:
        for process in reversed(started):
            stop(process)


# --- talking to the proxy -------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def raw(self) -> Any:
        return cbor2.loads(self.body)

    def parsed(self, operation: str) -> dict[str, Any]:
        """The answer as botocore's rpcv2Cbor parser reads it."""
        response = {"status_code": self.status, "headers": self.headers, "body": self.body}
        output = MODEL.operation_model(operation).output_shape
        parsed: dict[str, Any] = create_parser("smithy-rpc-v2-cbor").parse(response, output)
        return parsed


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def http(
        self, method: str, path: str, body: bytes, headers: dict[str, str], chunked: bool = False
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if chunked:  # two chunks, Transfer-Encoding: chunked, no Content-Length
                half = len(body) // 2
                parts = iter([body[:half], body[half:]])
                headers = {**headers, "Transfer-Encoding": "chunked"}
                connection.request(method, path, body=parts, headers=headers, encode_chunked=True)
            else:
                connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return Reply(response.status, headers, response.read())
        finally:
            connection.close()

    def send(
        self,
        operation: str,
        body: bytes,
        *,
        gzipped: bool = False,
        chunked: bool = False,
        drop: tuple[str, ...] = (),
    ) -> Reply:
        """POSTs a CBOR body with the SDK's headers, SigV4-signed for `monitoring`."""
        headers = {
            "Content-Type": "application/cbor",
            "Accept": "application/cbor",
            "smithy-protocol": "rpc-v2-cbor",
            "x-amzn-query-mode": "true",
        }
        if gzipped:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        url = f"http://127.0.0.1:{self.port}{SERVICE_PATH}/{operation}"
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(CREDENTIALS, "monitoring", REGION).add_auth(request)
        signed = {name: value for name, value in request.headers.items() if name not in drop}
        return self.http("POST", f"{SERVICE_PATH}/{operation}", body, signed, chunked)

    def call(self, operation: str, document: dict[str, Any], **options: Any) -> Reply:
        return self.send(operation, smithy_rs_cbor(document), **options)

    def control(self, path: str, document: dict[str, Any] | None = None) -> tuple[int, Any]:
        if document is None:
            reply = self.http("GET", path, b"", {})
        else:
            reply = self.http(
                "POST", path, json.dumps(document).encode(), {"Content-Type": "application/json"}
            )
        return reply.status, json.loads(reply.body)


# --- the checks -----------------------------------------------------------------------------


def dims(**pairs: str) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in pairs.items()]


DOCKER_DIMS = dims(ClusterName=CLUSTER, InstanceId=INSTANCE, Volume="docker")
STATISTICS = ["SampleCount", "Sum", "Minimum", "Maximum"]


def statistic_set(count: float, total: float, low: float, high: float) -> dict[str, float]:
    return {"SampleCount": count, "Sum": total, "Minimum": low, "Maximum": high}


def put_metric_data(client: Client, data: list[dict[str, Any]], **options: Any) -> Reply:
    return client.call("PutMetricData", {"Namespace": NAMESPACE, "MetricData": data}, **options)


def get_statistics(client: Client, metric: str, dimensions: list[dict[str, str]]) -> Reply:
    return client.call(
        "GetMetricStatistics",
        {
            "Namespace": NAMESPACE,
            "MetricName": metric,
            "Dimensions": dimensions,
            "StartTime": MINUTE - datetime.timedelta(minutes=5),
            "EndTime": MINUTE + datetime.timedelta(minutes=5),
            "Period": 60,
            "Statistics": STATISTICS,
        },
    )


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def expect_cbor_success(reply: Reply) -> None:
    expect(reply.status == 200, f"status {reply.status}, body {reply.body[:300]!r}")
    expect(reply.headers.get("smithy-protocol") == "rpc-v2-cbor", f"headers {reply.headers}")


def expect_cbor_error(reply: Reply, status: int, name: str, query_code: str) -> dict[str, Any]:
    expect(reply.status == status, f"status {reply.status}, wanted {status}: {reply.body[:300]!r}")
    expect(reply.headers.get("smithy-protocol") == "rpc-v2-cbor", f"headers {reply.headers}")
    expect(reply.headers.get("content-type") == "application/cbor", f"headers {reply.headers}")
    raw = reply.raw()
    expect(raw.get("__type") == f"com.amazonaws.cloudwatch#{name}", f"__type {raw.get('__type')!r}")
    expect(isinstance(raw.get("message"), str) and raw["message"] != "", f"message in {raw}")
    expect(
        reply.headers.get("x-amzn-query-error", "").split(";")[0] == query_code,
        f"headers {reply.headers}",
    )
    return dict(raw)


def check_statistic_set_round_trip(client: Client) -> None:
    reply = put_metric_data(
        client,
        [
            {
                "MetricName": "DiskUsedPercent",
                "Dimensions": DOCKER_DIMS,
                "Timestamp": MINUTE,
                "StatisticValues": statistic_set(60.0, 4500.0, 70.0, 80.0),
                "Unit": "Percent",
                "StorageResolution": 60,
            }
        ],
    )
    expect_cbor_success(reply)
    # PutMetricData has no output shape: rpcv2Cbor sends no body and no Content-Type.
    expect(
        reply.body == b"" and "content-type" not in reply.headers,
        f"Unit answer {reply.headers} {reply.body!r}",
    )

    reply = get_statistics(client, "DiskUsedPercent", DOCKER_DIMS)
    expect_cbor_success(reply)
    expect(reply.headers.get("content-type") == "application/cbor", f"headers {reply.headers}")
    points = reply.parsed("GetMetricStatistics")["Datapoints"]
    expect(len(points) == 1, f"datapoints {points}")
    point = points[0]
    got = {name: point[name] for name in STATISTICS}
    expect(got == statistic_set(60.0, 4500.0, 70.0, 80.0), f"statistics {got}")
    expect(point["Timestamp"] == MINUTE, f"timestamp {point['Timestamp']} != {MINUTE}")
    expect(point.get("Unit") == "Percent", f"unit {point.get('Unit')}")
    # The Rust decoder reads timestamps as tag 1 + float and doubles as floats only.
    expect(
        b"\xc1" + _double(MINUTE.timestamp()) in reply.body, "timestamp is not tag 1 over a double"
    )
    expect(cbor2.dumps("SampleCount") + _double(60.0) in reply.body, "SampleCount is not a double")


def check_dimensions_listed(client: Client) -> None:
    reply = put_metric_data(
        client,
        [
            {
                "MetricName": "Draining",
                "Dimensions": dims(ClusterName=CLUSTER),
                "Timestamp": MINUTE,
                "StatisticValues": statistic_set(60.0, 60.0, 1.0, 1.0),
                "Unit": "Count",
                "StorageResolution": 60,
            }
        ],
    )
    expect_cbor_success(reply)
    reply = client.call("ListMetrics", {"Namespace": NAMESPACE})
    expect_cbor_success(reply)
    listed = {
        (metric["MetricName"], frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"]))
        for metric in reply.parsed("ListMetrics")["Metrics"]
    }
    wanted = {
        ("DiskUsedPercent", frozenset((d["Name"], d["Value"]) for d in DOCKER_DIMS)),
        ("Draining", frozenset({("ClusterName", CLUSTER)})),
    }
    expect(wanted <= listed, f"listed {listed}")


def check_gzip_and_chunked_bodies(client: Client) -> None:
    # PutMetricData is @requestCompression(gzip): SDKs gzip bodies past a size threshold.
    metric = dims(ClusterName=CLUSTER, InstanceId=INSTANCE)
    earlier = MINUTE - datetime.timedelta(minutes=1)
    for when, total, options in (
        (MINUTE, 1e9, {"gzipped": True}),
        (earlier, 2e9, {"chunked": True}),
    ):
        datum = {
            "MetricName": "ReclaimedBytes",
            "Dimensions": metric,
            "Timestamp": when,
            "StatisticValues": statistic_set(60.0, total, 0.0, total),
            "Unit": "Bytes",
        }
        expect_cbor_success(put_metric_data(client, [datum], **options))
    reply = get_statistics(client, "ReclaimedBytes", metric)
    points = sorted(reply.parsed("GetMetricStatistics")["Datapoints"], key=lambda p: p["Timestamp"])
    got = [(point["Timestamp"], point["Sum"]) for point in points]
    expect(got == [(earlier, 2e9), (MINUTE, 1e9)], f"datapoints {got}")


def check_botocore_serializer_accepted(client: Client) -> None:
    # A second, independent rpcv2Cbor encoder (botocore's: definite maps, integer timestamps).
    metric = dims(ClusterName=CLUSTER, InstanceId=INSTANCE)
    params = {
        "Namespace": NAMESPACE,
        "MetricData": [
            {
                "MetricName": "ReclaimErrors",
                "Dimensions": metric,
                "Timestamp": MINUTE,
                "Value": 2.0,
                "Unit": "Count",
            }
        ],
    }
    serialized = create_serializer("smithy-rpc-v2-cbor").serialize_to_request(
        params, MODEL.operation_model("PutMetricData")
    )
    expect_cbor_success(client.send("PutMetricData", serialized["body"]))
    points = get_statistics(client, "ReclaimErrors", metric).parsed("GetMetricStatistics")[
        "Datapoints"
    ]
    expect(
        [(point["SampleCount"], point["Sum"]) for point in points] == [(1.0, 2.0)],
        f"datapoints {points}",
    )


def check_invalid_value_is_cbor_error(client: Client) -> None:
    reply = put_metric_data(
        client,
        [{"MetricName": "DiskUsedPercent", "Dimensions": DOCKER_DIMS, "Value": float("nan")}],
    )
    raw = expect_cbor_error(reply, 400, "InvalidParameterValueException", "InvalidParameterValue")
    expect("NaN" in raw["message"], f"message {raw['message']!r}")
    error = reply.parsed("PutMetricData")["Error"]
    expect(error["Code"] == "InvalidParameterValue", f"botocore reads {error}")


def check_malformed_requests_refused(client: Client) -> None:
    put = {"Namespace": NAMESPACE, "MetricData": []}
    cases = [
        (
            "no smithy-protocol",
            client.call("PutMetricData", put, drop=("smithy-protocol",)),
            400,
            "SerializationException",
        ),
        (
            "unsigned",
            client.call("PutMetricData", put, drop=("Authorization",)),
            403,
            "MissingAuthenticationToken",
        ),
        (
            "truncated CBOR",
            client.send("PutMetricData", b"\xbf\x61"),
            400,
            "SerializationException",
        ),
        (
            "off the model",
            client.call("PutMetricData", {"Namespace": NAMESPACE, "MetricData": "x"}),
            400,
            "SerializationException",
        ),
        ("unknown operation", client.call("NoSuchOperation", {}), 404, "UnknownOperationException"),
    ]
    for what, reply, status, name in cases:
        try:
            expect_cbor_error(reply, status, name, name)
        except AssertionError as err:
            raise AssertionError(f"{what}: {err}") from err


def check_fault_count(client: Client) -> None:
    status, _ = client.control(
        "/_proxy/fail", {"count": 2, "status": 503, "type": "ServiceUnavailable"}
    )
    expect(status == 200, f"/_proxy/fail answered {status}")
    datum = [{"MetricName": "Draining", "Dimensions": dims(ClusterName=CLUSTER), "Value": 0.0}]
    for _ in range(2):
        expect_cbor_error(
            put_metric_data(client, datum), 503, "ServiceUnavailable", "ServiceUnavailable"
        )
    expect_cbor_success(put_metric_data(client, datum))


def check_fault_down_until_healed(client: Client) -> None:
    status, _ = client.control(
        "/_proxy/fail", {"mode": "down", "status": 500, "type": "InternalServiceFault"}
    )
    expect(status == 200, f"/_proxy/fail answered {status}")
    for _ in range(3):
        expect_cbor_error(
            client.call("ListMetrics", {"Namespace": NAMESPACE}),
            500,
            "InternalServiceFault",
            "InternalServiceFault",
        )
    status, _ = client.control("/_proxy/heal", {})
    expect(status == 200, f"/_proxy/heal answered {status}")
    expect_cbor_success(client.call("ListMetrics", {"Namespace": NAMESPACE}))


def check_bad_fault_spec_refused(client: Client) -> None:
    for spec in ({"status": 200}, {"count": 0}, {"mode": "sideways"}):
        status, answer = client.control("/_proxy/fail", spec)
        expect(status == 400 and "error" in answer, f"{spec} -> {status} {answer}")


def check_stats_count_calls(client: Client) -> None:
    _, before = client.control("/_proxy/stats")
    client.control("/_proxy/fail", {"count": 1})
    datum = [{"MetricName": "Draining", "Dimensions": dims(ClusterName=CLUSTER), "Value": 0.0}]
    put_metric_data(client, datum)  # refused by the fault
    put_metric_data(client, datum)
    put_metric_data(client, datum)
    client.call("ListMetrics", {"Namespace": NAMESPACE})
    _, after = client.control("/_proxy/stats")
    grew = {op: after.get(op, 0) - before.get(op, 0) for op in ("PutMetricData", "ListMetrics")}
    failed = after["failed"].get("PutMetricData", 0) - before["failed"].get("PutMetricData", 0)
    expect(
        grew == {"PutMetricData": 2, "ListMetrics": 1} and failed == 1,
        f"before {before}, after {after}",
    )


CHECKS: list[Callable[[Client], None]] = [
    check_statistic_set_round_trip,
    check_dimensions_listed,
    check_gzip_and_chunked_bodies,
    check_botocore_serializer_accepted,
    check_invalid_value_is_cbor_error,
    check_malformed_requests_refused,
    check_fault_count,
    check_fault_down_until_healed,
    check_bad_fault_spec_refused,
    check_stats_count_calls,
]


def run(logs: Path) -> tuple[int, int]:
    passed = failed = 0
    with peers(logs) as port:
        client = Client(port)
        for check in CHECKS:
            name = check.__name__.removeprefix("check_")
            try:
                check(client)
            except Exception as err:  # one failing check must not hide the others
                failed += 1
                print(f"FAIL {name}: {err}")
                if not isinstance(err, AssertionError):
                    traceback.print_exc()
                client.control("/_proxy/heal", {})
            else:
                passed += 1
                print(f"ok   {name}")
    return passed, failed


def main() -> int:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop moto and the proxy.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="cw-proxy-selftest-") as tmp:
        logs = Path(tmp)
        try:
            passed, failed = run(logs)
        except KeyboardInterrupt:
            print("FAIL interrupted")
            passed, failed = 0, 1
        except Exception as err:
            print(f"FAIL setup: {err}")
            passed, failed = 0, 1
        if failed:
            for log in sorted(logs.glob("*.log")):
                print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-1500:]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

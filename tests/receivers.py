"""Real OTLP receivers started on loopback by the tests: rotel, Arize Phoenix, and a header recorder.

rotel and Phoenix are other people's code: rotel is a Rust OpenTelemetry
collector that prints every span it receives; Phoenix is a trace backend with
a query API. Each harness starts its process on free ports, waits until it is
ready, and stops the process it started (by its own pid) when the test is done.
Neither shows the headers of a request: :class:`HeaderRecorder` is an OTLP
receiver (HTTP/protobuf and gRPC, traces and metrics) that keeps them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ha_agent_tracing.agent._background import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ReceivedSpan:
    """A span as a receiver got it, in one shape for both receivers."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    resource: dict[str, Any] = field(default_factory=dict[str, Any])
    kind: str = ""
    """The span kind the receiver derived (Phoenix: OpenInference's LLM, TOOL, CHAIN, ... or UNKNOWN)."""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"receiver exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_s} s")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)


# ------------------------------------------------------------------ rotel


def rotel_binary() -> Path:
    import rotel

    return Path(rotel.__file__).parent / "rotel-agent"


_VALUE = re.compile(r"^(Str|Int|Double|Bool|Slice|Map|Bytes|Empty)\((.*)\)$", re.S)


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_rotel_value(text: str) -> Any:
    """``Str(x)``, ``Int(1)``, ``Bool(true)``, ``Double(1.5)``, ``Slice(Str(a), Str(b))``."""
    match = _VALUE.match(text.strip())
    if match is None:
        return text
    kind, inner = match.groups()
    if kind == "Int":
        return int(inner)
    if kind == "Double":
        return float(inner)
    if kind == "Bool":
        return inner == "true"
    if kind == "Slice":
        return [parse_rotel_value(part) for part in _split_top(inner)]
    return inner


def parse_rotel_output(text: str) -> list[ReceivedSpan]:
    """Spans from rotel's ``--debug-log traces --debug-log-verbosity detailed`` output."""
    spans: list[ReceivedSpan] = []
    resource: dict[str, Any] = {}
    current: dict[str, Any] | None = None
    section = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("ResourceSpans #"):
            resource, section = {}, "resource"
        elif stripped == "Resource attributes:":
            section = "resource"
        elif stripped.startswith("Span #"):
            current = {"attributes": {}, "resource": resource}
            spans.append(current)  # type: ignore[arg-type]
            section = "span"
        elif stripped == "Attributes:" and current is not None:
            section = "attributes"
        elif stripped.startswith(("ScopeSpans #", "Events:", "Links:")):
            section = "other"
        elif stripped.startswith("-> ") and ": " in stripped:
            key, value = stripped[3:].split(": ", 1)
            if section == "resource":
                resource[key] = parse_rotel_value(value)
            elif section == "attributes" and current is not None:
                current["attributes"][key] = parse_rotel_value(value)
        elif current is not None and section == "span" and ":" in stripped:
            key, value = (part.strip() for part in stripped.split(":", 1))
            current[key] = value
    result = []
    for span in spans:
        raw_span: dict[str, Any] = span  # type: ignore[assignment]
        result.append(
            ReceivedSpan(
                trace_id=raw_span["Trace ID"],
                span_id=raw_span["ID"],
                parent_id=raw_span.get("Parent ID") or None,
                name=raw_span["Name"],
                start_ns=int(raw_span["Start time"]),
                end_ns=int(raw_span["End time"]),
                attributes=raw_span["attributes"],
                status=raw_span.get("Status code", ""),
                resource=raw_span["resource"],
            )
        )
    return result


class Rotel:
    """rotel on free loopback ports, printing what it receives; optionally forwarding it on."""

    def __init__(
        self,
        workdir: Path,
        forward_to: str | None = None,
        forward_protocol: str = "http",
        *,
        ports: tuple[int, int] | None = None,
        name: str = "rotel",
    ) -> None:
        self.workdir = workdir
        self.grpc_port, self.http_port = ports or (free_port(), free_port())
        self.log = workdir / f"{name}-{self.http_port}.out"
        self.name = name
        self.forward_to = forward_to
        self.forward_protocol = forward_protocol
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def start(self) -> Rotel:
        exporter = ["--exporter", "blackhole"]
        if self.forward_to:
            exporter = [
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                self.forward_to,
                "--otlp-exporter-protocol",
                self.forward_protocol,
            ]
        command = [
            str(rotel_binary()),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            *exporter,
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            "--pid-file",
            str(self.workdir / f"{self.name}-{self.http_port}.pid"),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _wait_for_port("127.0.0.1", self.http_port, 10, self.process)
        _wait_for_port("127.0.0.1", self.grpc_port, 10, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def kill(self) -> None:
        """End the process abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def spans(self) -> list[ReceivedSpan]:
        return parse_rotel_output(self.log.read_text(errors="replace"))

    def wait_for_spans(self, span_ids: set[str], timeout_s: float = 15.0) -> list[ReceivedSpan]:
        """Everything received, once every span in ``span_ids`` is among it."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.spans()
            missing = span_ids - {s.span_id for s in found}
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"rotel has not received {len(missing)} of {len(span_ids)} spans")
            time.sleep(0.1)

    def __enter__(self) -> Rotel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ Phoenix


def phoenix_binary() -> Path:
    """Phoenix's ``phoenix`` command: PHOENIX_BIN, else .venv-phoenix (both made by scripts/test)."""
    configured = os.environ.get("PHOENIX_BIN")
    path = Path(configured) if configured else ROOT / ".venv-phoenix" / "bin" / "phoenix"
    if not path.exists():
        raise AssertionError(
            f"Arize Phoenix is not installed at {path}: run ./scripts/test, which creates .venv-phoenix "
            '(or deselect these tests explicitly with -m "not phoenix")'
        )
    return path


class Phoenix:
    """Arize Phoenix serving on free loopback ports with a fresh working directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.grpc_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def start(self, timeout_s: float = 120.0) -> Phoenix:
        env = {
            **os.environ,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
            "PHOENIX_ALLOWED_SANDBOX_PROVIDERS": "NONE",
        }
        for var in [v for v in env if v.startswith("OTEL_")]:
            del env[var]  # Phoenix is a separate program: our test settings are not its own
        with (self.workdir / "phoenix.out").open("wb") as out:
            self.process = subprocess.Popen(
                [str(phoenix_binary()), "serve"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Phoenix exited: " + (self.workdir / "phoenix.out").read_text()[-2000:])
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"Phoenix was not ready after {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, timeout_s=20)

    def spans(self, trace_id: str, project: str = "default") -> list[ReceivedSpan]:
        response = httpx.get(
            f"{self.url}/v1/projects/{project}/spans", params={"trace_id": trace_id}, timeout=10
        )
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return [
            ReceivedSpan(
                trace_id=item["context"]["trace_id"],
                span_id=item["context"]["span_id"],
                parent_id=item.get("parent_id"),
                name=item["name"],
                start_ns=_iso_ns(item["start_time"]),
                end_ns=_iso_ns(item["end_time"]),
                attributes=item.get("attributes") or {},
                status=item.get("status_code", ""),
                kind=item.get("span_kind", ""),
            )
            for item in response.json()["data"]
        ]

    def wait_for_spans(
        self, trace_id: str, span_ids: set[str], project: str = "default", timeout_s: float = 20.0
    ) -> list[ReceivedSpan]:
        """The trace's spans in ``project``, once every span in ``span_ids`` is among them."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.spans(trace_id, project)
            missing = span_ids - {s.span_id for s in found}
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Phoenix lacks {len(missing)} of {len(span_ids)} spans of trace {trace_id}"
                )
            time.sleep(0.2)

    def __enter__(self) -> Phoenix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _iso_ns(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


class HeaderRecorder:
    """An OTLP receiver on loopback, HTTP/protobuf and gRPC, that answers success and keeps each request's headers.

    ``headers("traces")`` lists, per export request of that signal, its
    headers (gRPC: its metadata) with lower-case names. The bodies are read
    and dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                recorder.record(self.path.rsplit("/", 1)[-1], dict(self.headers.items()))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                recorder.record("traces", dict(context.invocation_metadata()))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                recorder.record("metrics", dict(context.invocation_metadata()))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._grpc)
        self._grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    def record(self, signal: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._received.append((signal, {k.lower(): v for k, v in headers.items()}))

    def endpoint(self, protocol: str, signal: str) -> str:
        """The URL an exporter of ``protocol`` (``grpc`` or ``http/protobuf``) sends ``signal`` to."""
        if protocol == "grpc":
            return f"http://127.0.0.1:{self._grpc_port}"
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1/{signal}"

    def headers(self, signal: str) -> list[dict[str, str]]:
        """The headers of each request of ``signal`` received so far, oldest first."""
        with self._lock:
            return [headers for kind, headers in self._received if kind == signal]

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)

    def __enter__(self) -> HeaderRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

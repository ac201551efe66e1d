"""A/B runs of the reference service, compared with `ha-agent-tracing compare`.

    .venv/bin/python benchmarks/ab.py parallel-tools   # HA_AGENT_PARALLEL_TOOLS true (A) vs false (B)
    .venv/bin/python benchmarks/ab.py parallel-tools-mixed   # the same with a mixed workload
    .venv/bin/python benchmarks/ab.py context-cache    # HA_AGENT_CONTEXT_TTL 30 (A, default) vs 0 (B), questions
    .venv/bin/python benchmarks/ab.py context-cache-mixed   # the same with the mixed workload
    .venv/bin/python benchmarks/ab.py parallel-tools --quick   # the smoke run CI makes

Each experiment starts two `ha-agent-tracing serve` processes that differ in one
setting, each with its embedded model and home at a realistic latency (the model
answers a turn in 250 ms, the home a REST call in 40 ms, as a Home Assistant on
the local network does). The same chat messages go to both, interleaved: each
message is sent to A and B at the same moment, so drift of the machine hits both
alike. Then each service's reports are downloaded from
GET /api/v1/performance/export into benchmarks/results/ab/<experiment>-{a,b}.json,
and `ha-agent-tracing compare` prints the table (also saved as <experiment>.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from ha_agent_tracing._cli import main as cli_main
from ha_agent_tracing.agent._background import free_port

ROOT = Path(__file__).resolve().parent.parent

# What users ask, each message a new conversation so every request is alike in
# kind: one tool, two tools in one turn, reads, small talk.
MIXED = [
    "Turn off the kitchen light and tell me the temperature",
    "Which lights are on?",
    "Switch on the coffee maker and turn on the office fan",
    "Is it cold outside?",
    "Turn off the porch light and what's the temperature",
    "Hello there",
]
# Two tool calls in one model turn each: the requests the tool-call switch can change.
TWO_TOOLS = [
    "Turn off the kitchen light and tell me the temperature",
    "Switch on the coffee maker and turn on the office fan",
    "Turn off the porch light and what's the temperature",
]
# Questions only: no device changes state, so nothing invalidates the cached
# context (every call_service does) and the cache's own effect shows.
QUESTIONS = [
    "Which lights are on?",
    "Is it cold outside?",
    "What's the status of everything?",
    "Hello there",
]

EXPERIMENTS: dict[str, dict[str, object]] = {
    "parallel-tools": {
        "a": ("parallel", {"HA_AGENT_PARALLEL_TOOLS": "true"}),
        "b": ("sequential", {"HA_AGENT_PARALLEL_TOOLS": "false"}),
        "messages": TWO_TOOLS,
    },
    "parallel-tools-mixed": {
        "a": ("parallel", {"HA_AGENT_PARALLEL_TOOLS": "true"}),
        "b": ("sequential", {"HA_AGENT_PARALLEL_TOOLS": "false"}),
        "messages": MIXED,
    },
    "context-cache": {
        "a": ("warm-cache", {"HA_AGENT_CONTEXT_TTL": "30"}),
        "b": ("no-cache", {"HA_AGENT_CONTEXT_TTL": "0"}),
        "messages": QUESTIONS,
    },
    "context-cache-mixed": {
        "a": ("warm-cache", {"HA_AGENT_CONTEXT_TTL": "30"}),
        "b": ("no-cache", {"HA_AGENT_CONTEXT_TTL": "0"}),
        "messages": MIXED,
    },
}


@contextlib.contextmanager
def service(
    name: str, env_overrides: dict[str, str], args: argparse.Namespace, log_dir: Path
) -> Iterator[str]:
    """`ha-agent-tracing serve` with one variant's settings; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "HA_", "OPENAI_"))}
    env.update(
        {
            "HA_AGENT_PORT": str(port),
            "HA_AGENT_MODEL_LATENCY_MS": str(args.model_latency_ms),
            "HA_AGENT_HOME_LATENCY_MS": str(args.home_latency_ms),
            "HA_AGENT_RATE_LIMIT": "1000000",
            "HA_AGENT_TRACING_REPORTS_API": "on",
            "HA_AGENT_TRACING_API_ALLOW_LOOPBACK": "true",
            "HA_AGENT_TRACING_MAX_REPORTS": str(args.requests + 10),
            "HA_AGENT_TRACING_VARIANT": name,
            "OTEL_TRACES_EXPORTER": "none",
            **env_overrides,
        }
    )
    command = [str(Path(sys.executable).parent / "ha-agent-tracing"), "serve", "--log-level", "warning"]
    log = (log_dir / f"{name}.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"service {name} did not start; see {log.name}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(20)
        log.close()


async def send_interleaved(urls: list[str], messages: list[str], requests: int, concurrency: int) -> None:
    """``requests`` chat messages to every service, each message to all of them at once."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(messages[i % len(messages)])
    async with httpx2.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                message = queue.get_nowait()
                answers = await asyncio.gather(
                    *(client.post(f"{url}/api/v1/chat", json={"message": message}) for url in urls)
                )
                for url, answer in zip(urls, answers, strict=True):
                    if answer.status_code != 200:
                        raise RuntimeError(f"{url}: chat answered {answer.status_code}: {answer.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def run(experiment: str, args: argparse.Namespace) -> int:
    spec = EXPERIMENTS[experiment]
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (name_a, env_a), (name_b, env_b) = spec["a"], spec["b"]  # type: ignore[misc]
    print(
        f"{experiment}: {args.requests} chat requests to each of A ({name_a}) and B ({name_b}); "
        f"model {args.model_latency_ms} ms per turn, home {args.home_latency_ms} ms per call",
        flush=True,
    )
    files = {}
    with (
        service(name_a, env_a, args, out_dir) as url_a,  # type: ignore[arg-type]
        service(name_b, env_b, args, out_dir) as url_b,  # type: ignore[arg-type]
    ):
        started = time.monotonic()
        messages: list[str] = spec["messages"]  # type: ignore[assignment]
        asyncio.run(send_interleaved([url_a, url_b], messages, args.requests, args.concurrency))
        time.sleep(0.3)  # spans that end after the response join their reports
        for side, url in (("a", url_a), ("b", url_b)):
            export = httpx2.get(f"{url}/api/v1/performance/export", timeout=30)
            export.raise_for_status()
            path = out_dir / f"{experiment}-{side}.json"
            path.write_text(export.text)
            files[side] = path
        print(
            f"sent in {time.monotonic() - started:.1f} s; reports in {files['a']} and {files['b']}\n",
            flush=True,
        )
    relative = {
        side: os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
        for side, path in files.items()
    }
    argv = ["compare", relative["a"], relative["b"], "--seed", "0"]
    if args.quick:
        argv += ["--resamples", "200"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli_main(argv)
    table = buffer.getvalue()
    print(table)
    (out_dir / f"{experiment}.md").write_text(
        f"`ha-agent-tracing {' '.join(argv)}`\n\n```\n{table.rstrip()}\n```\n"
    )
    return code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument(
        "--requests", type=int, default=100, help="chat requests to each service (default 100)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="messages in flight at once (default 2)")
    parser.add_argument("--model-latency-ms", type=int, default=250)
    parser.add_argument("--home-latency-ms", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ab")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 requests, short latencies")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.model_latency_ms, args.home_latency_ms = 6, 5, 5
    return run(args.experiment, args)


if __name__ == "__main__":
    raise SystemExit(main())

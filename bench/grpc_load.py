"""OTLP/gRPC load: `python -m bench.grpc_load TARGET SECONDS CONCURRENCY BODY_FILE`.

The same serialized ExportTraceServiceRequest, sent as it is (no per-call encoding) by
CONCURRENCY concurrent calls on one channel for SECONDS; prints `OK <calls> ERRORS <calls>
SECONDS <elapsed>`. Every call started is awaited, so each OK call is a batch the
collector accepted. It runs in a process of its own (`grpc_post`), away from the sink.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class GrpcResult:
    ok: int
    errors: int
    seconds: float


async def _load(target: str, seconds: float, concurrency: int, body: bytes) -> GrpcResult:
    ok = errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        export = channel.unary_unary(EXPORT)
        await export(body, timeout=10)  # connected and warm before the clock starts
        started = time.monotonic()
        deadline = started + seconds

        async def caller() -> None:
            nonlocal ok, errors
            while time.monotonic() < deadline:
                try:
                    await export(body, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                else:
                    ok += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return GrpcResult(ok, errors, time.monotonic() - started)


def grpc_post(target: str, body: bytes, concurrency: int, seconds: int) -> GrpcResult:
    """Run the load in a child process; its counts."""
    with tempfile.TemporaryDirectory(prefix="flext-bench-grpc-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        out = subprocess.run(
            [sys.executable, "-m", "bench.grpc_load", target, str(seconds), str(concurrency),
             str(body_file)],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout.split()
    return GrpcResult(int(out[1]), int(out[3]), float(out[5]))


def main() -> None:
    target, seconds, concurrency, body_file = sys.argv[1:5]
    result = asyncio.run(
        _load(target, float(seconds), int(concurrency), Path(body_file).read_bytes())
    )
    print(f"OK {result.ok} ERRORS {result.errors} SECONDS {result.seconds:.3f}")


if __name__ == "__main__":
    main()

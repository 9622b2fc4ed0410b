"""The shared exporter helper on a real MemoryQueue, with an injected sleep: no wall time."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from prometheus_client import CollectorRegistry

from flext_observability.pipeline.exporter import QueueExporter
from flext_observability.pipeline.queue import MemoryQueue, Signal
from flext_observability.retry import (
    ANY_5XX_RETRYABLE_HTTP_STATUS,
    Backoff,
    PermanentError,
    RetryableError,
    classify,
    parse_retry_after,
)
from flext_observability.settings import RetryConfig
from flext_observability.telemetry import SelfTelemetry

NO_JITTER = RetryConfig(initial_interval=1, max_interval=5, multiplier=1.5,
                        randomization_factor=0)


def http_error(status, **headers):
    request = httpx.Request("POST", "http://downstream/v1/traces")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def grpc_error(code, retry_delay=None):
    trailing = grpc.aio.Metadata()
    if retry_delay is not None:
        status = Status(code=code.value[0], message="slow down")
        status.details.add().Pack(RetryInfo(retry_delay=Duration(seconds=retry_delay)))
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details="downstream says no")


@pytest.mark.parametrize(("error", "retryable", "retry_after"), [
    (http_error(429, **{"Retry-After": "7"}), True, 7.0),
    (http_error(502), True, None),
    (http_error(503, **{"Retry-After": "2"}), True, 2.0),
    (http_error(504), True, None),
    (http_error(400), False, None),
    (http_error(401), False, None),
    (http_error(404), False, None),
    (http_error(413), False, None),
    (http_error(500), False, None),
    (httpx.ConnectError("refused"), True, None),
    (httpx.ReadTimeout("slow"), True, None),
    (TimeoutError(), True, None),
    (ConnectionResetError(), True, None),
    (grpc_error(grpc.StatusCode.UNAVAILABLE), True, None),
    (grpc_error(grpc.StatusCode.UNAVAILABLE, retry_delay=3), True, 3.0),
    (grpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), True, None),
    (grpc_error(grpc.StatusCode.ABORTED), True, None),
    (grpc_error(grpc.StatusCode.CANCELLED), True, None),
    (grpc_error(grpc.StatusCode.OUT_OF_RANGE), True, None),
    (grpc_error(grpc.StatusCode.DATA_LOSS), True, None),
    (grpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=4), True, 4.0),
    (grpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), False, None),
    (grpc_error(grpc.StatusCode.INVALID_ARGUMENT), False, None),
    (grpc_error(grpc.StatusCode.UNAUTHENTICATED), False, None),
    (grpc_error(grpc.StatusCode.UNIMPLEMENTED), False, None),
    (PermanentError("bad"), False, None),
    (RetryableError("later", 9), True, 9.0),
])
def test_failures_are_classified_once(error, retryable, retry_after):
    classified = classify(error)
    assert isinstance(classified, RetryableError if retryable else PermanentError)
    if retryable:
        assert classified.retry_after == retry_after


@pytest.fixture(scope="module")
def refusing_server():
    """A real gRPC server whose every call fails with the code its method names (and, for
    `/slow/<code>`, RetryInfo asking for 4 s): the errors a blocking call raises."""

    def fail(path, _request, context):
        code = grpc.StatusCode[path.rsplit("/", 1)[1]]
        if path.startswith("/slow/"):
            status = Status(code=code.value[0], message="slow down")
            status.details.add().Pack(RetryInfo(retry_delay=Duration(seconds=4)))
            context.set_trailing_metadata([("grpc-status-details-bin",
                                            status.SerializeToString())])
        context.abort(code, "downstream says no")

    class Refuse(grpc.GenericRpcHandler):
        def service(self, details):
            path = details.method
            return grpc.unary_unary_rpc_method_handler(lambda request, context: fail(
                path, request, context))

    server = grpc.server(ThreadPoolExecutor(2), handlers=[Refuse()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize(("path", "retryable", "retry_after"), [
    ("/fast/UNAVAILABLE", True, None),
    ("/slow/RESOURCE_EXHAUSTED", True, 4.0),
    ("/fast/RESOURCE_EXHAUSTED", False, None),
    ("/fast/INVALID_ARGUMENT", False, None),
])
def test_a_blocking_calls_failure_is_classified_like_an_aio_one(
    refusing_server, path, retryable, retry_after
):
    with grpc.insecure_channel(refusing_server) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(b"", timeout=5)
    classified = classify(raised.value)
    assert isinstance(classified, RetryableError if retryable else PermanentError)
    assert "downstream says no" in str(classified)
    if retryable:
        assert classified.retry_after == retry_after


def test_an_exporter_may_retry_every_5xx():
    assert isinstance(classify(http_error(500), ANY_5XX_RETRYABLE_HTTP_STATUS), RetryableError)
    assert isinstance(classify(http_error(422), ANY_5XX_RETRYABLE_HTTP_STATUS), PermanentError)


def test_retry_after_takes_seconds_or_an_http_date():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480) == 10
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_to_its_cap_and_honours_retry_after():
    backoff = Backoff(NO_JITTER)
    assert [backoff.next() for _ in range(6)] == [1, 1.5, 2.25, 3.375, 5, 5]
    assert backoff.next(retry_after=12) == 12
    assert backoff.next(retry_after=0.1) == 5


@pytest.mark.parametrize(("rng", "expected"), [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5)])
def test_backoff_jitter_spreads_around_the_interval(rng, expected):
    retry = RetryConfig(initial_interval=1, max_interval=30, randomization_factor=0.5)
    assert Backoff(retry, rng=lambda: rng).next() == expected


class Harness:
    """A MemoryQueue, telemetry and a QueueExporter whose sleeps are recorded, not slept."""

    def __init__(self, push, retry=NO_JITTER, sleep=None, **settings):
        self.queue = MemoryQueue(10_000, 10_000_000, retry_after=1)
        self.registry = CollectorRegistry()
        self.telemetry = SelfTelemetry(self.registry, self.queue)
        self.sleeps = []
        self.now = 0.0

        async def recorded_sleep(delay):
            self.sleeps.append(delay)
            self.now += delay
            await asyncio.sleep(0)

        options = {"batch_max_items": 100, "batch_timeout": 0, "num_senders": 1,
                   "timeout": 5, **settings}
        self.exporter = QueueExporter(
            "test", self.queue, [Signal.SPANS], push, self.telemetry, retry=retry,
            clock=lambda: self.now, sleep=sleep or recorded_sleep, **options,
        )

    async def start(self, records=()):
        await self.queue.start()
        for payload, items in records:
            await self.queue.put(Signal.SPANS, "otlp-pb", payload, items)
        await self.exporter.start()

    def value(self, name, **labels):
        return self.registry.get_sample_value(name, {"exporter": "test", **labels}) or 0

    async def acked(self, seq):
        await until(lambda: self.queue.cursor("test") >= seq, f"acknowledged up to {seq}")


async def until(predicate, what, attempts=5000):
    """Yield to the exporter's tasks until `predicate()` holds."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{what}: not reached")


async def test_retries_with_backoff_then_acknowledges():
    calls = []

    async def push(records):
        calls.append([r.payload for r in records])
        if len(calls) < 4:
            raise RetryableError("down")
        return 0

    h = Harness(push)
    await h.start([(b"a", 2), (b"b", 3)])
    await h.acked(2)
    assert calls == [[b"a", b"b"]] * 4
    assert h.sleeps == [1, 1.5, 2.25]
    assert h.value("flext_collector_export_retries_total") == 3
    assert h.value("flext_collector_export_failures_total") == 3
    assert h.value("flext_collector_exported_items_total") == 5
    assert h.value("flext_collector_exporter_up") == 1
    assert h.queue.depth(Signal.SPANS) == 0
    await h.exporter.shutdown(h.now + 1)


async def test_retry_after_from_the_downstream_is_honoured():
    failures = [http_error(429, **{"Retry-After": "30"}), grpc_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=20)]

    async def push(records):
        if failures:
            raise failures.pop(0)
        return 0

    h = Harness(push, retry=RetryConfig(initial_interval=1, max_interval=5))
    await h.start([(b"a", 1)])
    await h.acked(1)
    assert h.sleeps == [30, 20]
    await h.exporter.shutdown(h.now + 1)


async def test_a_permanent_error_drops_the_batch_once_and_moves_on():
    calls = []

    async def push(records):
        calls.append(records[0].payload)
        if records[0].payload == b"bad":
            raise http_error(400)
        return 0

    h = Harness(push, batch_max_items=1)
    await h.start([(b"bad", 4), (b"good", 1)])
    await h.acked(2)
    assert calls == [b"bad", b"good"]
    assert h.sleeps == []
    assert h.value("flext_collector_dropped_items_total", reason="permanent_error") == 4
    assert h.value("flext_collector_exported_items_total") == 1
    assert h.value("flext_collector_export_failures_total") == 1
    await h.exporter.shutdown(h.now + 1)


async def test_items_refused_inside_an_accepted_request_are_counted_as_dropped():
    async def push(records):
        return 2

    h = Harness(push)
    await h.start([(b"a", 10)])
    await h.acked(1)
    assert h.value("flext_collector_exported_items_total") == 8
    assert h.value("flext_collector_dropped_items_total", reason="rejected_by_downstream") == 2
    await h.exporter.shutdown(h.now + 1)


async def test_batches_fill_up_to_batch_max_items():
    batches = []

    async def push(records):
        batches.append([r.items for r in records])
        return 0

    h = Harness(push, batch_max_items=5)
    await h.start([(b"a", 2), (b"b", 2), (b"c", 2), (b"d", 2)])
    await h.acked(4)
    assert batches == [[2, 2, 2], [2]]
    await h.exporter.shutdown(h.now + 1)


async def test_concurrent_senders_acknowledge_in_seq_order_only():
    release = {seq: asyncio.Event() for seq in (1, 2, 3)}
    started = []

    async def push(records):
        seq = records[0].seq
        started.append(seq)
        await release[seq].wait()
        return 0

    h = Harness(push, batch_max_items=1, num_senders=3)
    await h.start([(b"a", 1), (b"b", 1), (b"c", 1)])
    await until(lambda: len(started) == 3, "three pushes in flight")
    assert sorted(started) == [1, 2, 3]
    release[3].set()
    release[2].set()
    await asyncio.sleep(0.01)
    assert h.queue.cursor("test") == 0  # 2 and 3 are done, 1 is not: nothing acked
    assert h.queue.depth(Signal.SPANS) == 3
    release[1].set()
    await h.acked(3)
    assert h.queue.depth(Signal.SPANS) == 0
    await h.exporter.shutdown(h.now + 1)


async def test_shutdown_leaves_what_was_not_delivered_in_the_queue():
    down = True
    delivered = []

    async def push(records):
        if down:
            raise RetryableError("down")
        delivered.extend(r.payload for r in records)
        return 0

    async def endless_sleep(delay):
        await asyncio.Event().wait()

    h = Harness(push, sleep=endless_sleep)
    await h.start([(b"a", 1), (b"b", 1)])
    await until(lambda: h.value("flext_collector_export_failures_total"), "a failed attempt")
    await asyncio.wait_for(h.exporter.shutdown(h.now + 10), 5)  # the backoff sleep is cut short
    assert h.queue.cursor("test") == 0
    assert h.queue.depth(Signal.SPANS) == 2
    assert h.exporter.state()["state"] == "stopped"

    down = False
    await h.exporter.start()  # the next start sends it all
    await h.acked(2)
    assert delivered == [b"a", b"b"]
    await h.exporter.shutdown(h.now + 1)


@pytest.mark.parametrize(("finishes", "acked"), [(True, 1), (False, 0)])
async def test_shutdown_lets_a_push_in_flight_finish_until_the_deadline(finishes, acked):
    entered = asyncio.Event()
    never = asyncio.Event()

    async def push(records):
        entered.set()
        if not finishes:
            await never.wait()
        await asyncio.sleep(0.01)
        return 0

    h = Harness(push)
    h.now = 100.0
    await h.start([(b"a", 1)])
    await entered.wait()
    deadline = h.now + (5 if finishes else 0.05)
    await asyncio.wait_for(h.exporter.shutdown(deadline), 5)
    assert h.queue.cursor("test") == acked


async def test_shutdown_is_safe_before_start_and_twice():
    async def push(records):
        return 0

    h = Harness(push)
    await h.exporter.shutdown(0)
    await h.start()
    await h.exporter.shutdown(0)
    await h.exporter.shutdown(0)

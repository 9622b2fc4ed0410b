"""`queue.kind: kafka` against a real 3-broker cluster: two collector instances on the same
brokers behave as one collector, and no request answered 2xx is lost to a crash of an
instance or a broker (CONTRACT §9)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from flext_observability.pipeline.kafka.queue import START_MARGIN
from helpers.exposition import sample
from helpers.kafka import KafkaCluster, ensure_running, kafka_queue
from helpers.otlp_sink import OtlpSink
from helpers.procs import Alertmanager, Daemon, deep_merge, poll
from helpers.webhook import WebhookReceiver, notifying_alertmanager

pytestmark = pytest.mark.integration

FAST_RETRY = {"initial_interval": 0.1, "max_interval": 0.5}
# exporters.prometheus.max_series_per_metric of both instances
LIMITED_SERIES = 6


def native_span(name: str) -> dict[str, Any]:
    now = time.time_ns()
    return {"trace_id": secrets.token_hex(16), "span_id": secrets.token_hex(8), "name": name,
            "service": "kafka-svc", "start_time": now - 1_000_000, "end_time": now}


def otlp_metrics(name: str, value: float, service: str) -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = service
    metric = resource.scope_metrics.add().metrics.add(name=name)
    point = metric.sum.data_points.add(as_double=value, time_unix_nano=time.time_ns())
    point.attributes.add(key="path").value.string_value = "/a"
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = 1  # delta
    return request.SerializeToString()


def post(daemon: Daemon, route: str, body: Any, timeout: float = 15) -> httpx.Response:
    return httpx.post(f"{daemon.url}/api/v1/{route}", json=body, timeout=timeout)


def scrape(daemon: Daemon) -> str:
    return httpx.get(f"{daemon.url}/metrics", timeout=10).text


def start_instance(tmp: Path, name: str, overrides: dict[str, Any]) -> Daemon:
    return Daemon(tmp / name, overrides, ready_timeout=60).start()


class Pair:
    """Collector instances A and B on the same brokers and topics, spans to one sink,
    alerts to one Alertmanager."""

    def __init__(
        self, tmp: Path, cluster: KafkaCluster, sink: OtlpSink, alertmanager: Alertmanager
    ) -> None:
        self.config = deep_merge(
            kafka_queue(cluster),
            {"exporters": {
                "jaeger": {"endpoint": sink.grpc_endpoint, "retry": FAST_RETRY,
                           "batch_timeout": 0.05},
                "alertmanager": {"urls": [alertmanager.url], "resend_interval": 1,
                                 "retry": FAST_RETRY},
                "prometheus": {"max_series_per_metric": LIMITED_SERIES},
            }},
        )
        self.a = start_instance(tmp, "a", self.config)
        try:
            self.b = start_instance(tmp, "b", self.config)
        except BaseException:
            self.a.stop()
            raise

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    receiver = OtlpSink().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def alertmanager(
    webhook: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Alertmanager]:
    manager = notifying_alertmanager(tmp_path_factory.mktemp("alertmanager"), webhook)
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def pair(
    kafka_cluster: KafkaCluster, sink: OtlpSink, alertmanager: Alertmanager,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    instances = Pair(tmp_path_factory.mktemp("pair"), kafka_cluster, sink, alertmanager)
    yield instances
    instances.stop()


@pytest.fixture(autouse=True)
def _whole_cluster(kafka_cluster: KafkaCluster) -> Iterator[None]:
    """Every test starts and ends with every broker up."""
    ensure_running(kafka_cluster)
    yield
    ensure_running(kafka_cluster)


class Load:
    """Posts batches of spans to some instances in a thread; remembers what got a 2xx."""

    def __init__(self, targets: list[Daemon]) -> None:
        self.targets = targets
        self.accepted: set[str] = set()
        self.refused = 0
        self.failed = 0
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            target = self.targets[n % len(self.targets)]
            batch = [native_span(f"load-{n}-{i}") for i in range(20)]
            n += 1
            try:
                answer = post(target, "spans", batch, timeout=10)
            except httpx.HTTPError:
                self.failed += 1
                time.sleep(0.05)
                continue
            if answer.status_code == 202:
                self.accepted |= {s["span_id"] for s in batch}
            elif answer.status_code == 503 and answer.headers.get("Retry-After"):
                self.refused += 1
                time.sleep(0.05)
            else:
                self.unexpected.append(f"{answer.status_code} {answer.text[:200]}")

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        # Anything but 202, or 503 with Retry-After, fails the test.
        assert not self.unexpected, self.unexpected[:5]


def test_two_instances_behave_as_one_collector(pair: Pair, sink: OtlpSink) -> None:
    a, b = pair.a, pair.b
    spans_a = [native_span(f"a-{i}") for i in range(30)]
    spans_b = [native_span(f"b-{i}") for i in range(30)]
    assert post(a, "spans", spans_a).status_code == 202
    assert post(b, "spans", spans_b).status_code == 202
    counter = {"name": "kafka_jobs", "type": "counter", "service": "common", "labels": {"q": "x"}}
    assert post(a, "metrics", [{**counter, "value": 2}]).status_code == 202
    assert post(b, "metrics", [{**counter, "value": 3}]).status_code == 202
    for daemon, value in ((a, 1.5), (b, 2.5)):
        answer = httpx.post(f"{daemon.url}/v1/metrics", content=otlp_metrics(
            "kafka_otlp_requests", value, "otlp-svc"),
            headers={"Content-Type": "application/x-protobuf"}, timeout=15)
        assert answer.status_code == 200, answer.text
    assert post(a, "alerts", [{"name": "DiskFull", "service": "db-a"}]).status_code == 202
    assert post(b, "alerts", [{"name": "CpuHot", "service": "db-b"}]).status_code == 202
    assert post(a, "health", [{"service": "svc-a", "status": "healthy"}]).status_code == 202
    assert post(b, "health", [{"service": "svc-b", "status": "degraded"}]).status_code == 202

    # Every span reaches the sink once, whichever instance took it.
    wanted = {s["span_id"] for s in spans_a + spans_b}
    sink.wait_for_span_ids(wanted, timeout=60)
    received = [s for s in sink.spans() if s.span_id in wanted]
    assert len(received) == len(wanted)
    by_id = {s.span_id: s for s in received}
    for sent in spans_a + spans_b:
        got = by_id[sent["span_id"]]
        assert (got.trace_id, got.name) == (sent["trace_id"], sent["name"])

    # Both instances show every metric (a counter summed once), alert and health report.
    for daemon in (a, b):
        text = poll(lambda d=daemon: scrape(d), lambda t: (
            sample(t, "kafka_jobs_total", job="common", q="x") == 5
            and sample(t, "kafka_otlp_requests_total", job="otlp-svc", path="/a") == 4
        ), timeout=30, interval=0.3, what=f"state on {daemon.url}")
        assert sample(text, "flext_collector_kafka_connected") == 1
        alerts = poll(
            lambda d=daemon: httpx.get(f"{d.url}/api/v1/alerts", timeout=10).json()["alerts"],
            lambda got: len(got) == 3, timeout=30, interval=0.3, what="alerts",
        )
        # (svc-b's degraded report raises ServiceDegraded on every instance alike)
        assert {x["labels"]["alertname"] for x in alerts} == {
            "DiskFull", "CpuHot", "ServiceDegraded"}
        services = poll(
            lambda d=daemon: httpx.get(f"{d.url}/api/v1/health", timeout=10).json()["services"],
            lambda got: len(got) == 2, timeout=30, interval=0.3, what="health",
        )
        assert {(s["service"], s["status"]) for s in services} == {
            ("svc-a", "healthy"), ("svc-b", "degraded")}


FIRED_THEN_RESOLVED = [("firing", ["firing"]), ("resolved", ["resolved"])]


def held_alert_names(daemon: Daemon) -> set[str]:
    alerts = httpx.get(f"{daemon.url}/api/v1/alerts", timeout=10).json()["alerts"]
    return {alert["labels"]["alertname"] for alert in alerts}


def notified(webhook: WebhookReceiver, alertname: str, wanted: list[Any]) -> None:
    """Wait until alertname's group was notified exactly `wanted` (a prefix of it is not
    enough; anything else fails at once)."""
    def settled(got: list[Any]) -> bool:
        assert got == wanted[:len(got)], f"{alertname}: {got}"
        return got == wanted
    poll(lambda: webhook.notifications(alertname), settled, timeout=30, interval=0.2,
         what=f"{alertname} notified {wanted}")


def test_alerts_from_either_instance_reach_alertmanager_once_per_group(
    pair: Pair, webhook: WebhookReceiver
) -> None:
    """Both instances hold every alert and send it: Alertmanager sees each one alert in
    its group, notified once firing and once resolved, whichever instance took it."""
    a, b = pair.a, pair.b
    assert post(a, "alerts", [{"name": "KafkaFromA", "service": "web"}]).status_code == 202
    assert post(b, "alerts", [{"name": "KafkaFromB", "service": "web"}]).status_code == 202
    for name in ("KafkaFromA", "KafkaFromB"):
        notified(webhook, name, FIRED_THEN_RESOLVED[:1])
    # Resolved through the other instance.
    assert post(b, "alerts", [{"name": "KafkaFromA", "service": "web",
                               "status": "resolved"}]).status_code == 202
    assert post(a, "alerts", [{"name": "KafkaFromB", "service": "web",
                               "status": "resolved"}]).status_code == 202
    for name in ("KafkaFromA", "KafkaFromB"):
        notified(webhook, name, FIRED_THEN_RESOLVED)
    # Both instances go on re-sending what they hold (every second): no notification more.
    time.sleep(3)
    for name in ("KafkaFromA", "KafkaFromB"):
        assert webhook.notifications(name) == FIRED_THEN_RESOLVED


def limited_series(daemon: Daemon) -> set[str]:
    return set(re.findall(r'^kafka_limited\{[^}]*k="([^"]+)"', scrape(daemon), re.MULTILINE))


def post_together(requests: list[tuple[Daemon, str, Any]]) -> list[httpx.Response]:
    """Each (daemon, route, body) posted from its own thread, at the same moment."""
    barrier = threading.Barrier(len(requests))

    def send(request: tuple[Daemon, str, Any]) -> httpx.Response:
        barrier.wait()
        return post(*request)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_series_limits_two_instances_hold_the_same_series(pair: Pair) -> None:
    """Admission is decided once, by the instance that takes the request, and only what
    it admitted is in the log; every instance applies every record and applying never
    refuses: both hold the same series, the union of what was answered 2xx, even where
    requests to A and to B at the same moment took the limit past its value."""
    accepted: set[str] = set()
    refused = {"a": 0, "b": 0}
    for round_ in range(4):
        batches = {
            name: [{"name": "kafka_limited", "type": "gauge", "value": 1, "service": "lim",
                    "labels": {"k": f"{name}{round_}-{i}"}} for i in range(2)]
            for name in ("a", "b")
        }
        answers = dict(zip(batches, post_together(
            [(pair.a, "metrics", batches["a"]), (pair.b, "metrics", batches["b"])]),
            strict=True))
        for name, answer in answers.items():
            if answer.status_code == 202:
                accepted |= {m["labels"]["k"] for m in batches[name]}
            else:
                assert answer.status_code == 422, answer.text
                assert "max_series_per_metric" in answer.json()["errors"][0]["message"]
                refused[name] += 1
    assert LIMITED_SERIES <= len(accepted) < 4 * 2 * 2
    for daemon in (pair.a, pair.b):
        poll(lambda d=daemon: limited_series(d), lambda got: got == accepted, timeout=30,
             interval=0.3, what=f"the admitted series on {daemon.url}")
    # Both at or past the limit now: a new series is refused by either.
    for daemon in (pair.a, pair.b):
        answer = post(daemon, "metrics", [{"name": "kafka_limited", "type": "gauge",
                                           "value": 1, "service": "lim",
                                           "labels": {"k": "late"}}])
        assert answer.status_code == 422, answer.text


def reload_otlp(daemon: Daemon, *endpoints: str) -> None:
    """Rewrite the daemon's config with `exporters.otlp` entries "extra" (traces) to these
    endpoints (none: no entry) and reload it."""
    entries = [{"name": "extra", "endpoint": endpoint, "signals": ["traces"],
                "batch_timeout": 0.05, "retry": FAST_RETRY} for endpoint in endpoints]
    config = {**daemon.config, "exporters": {**daemon.config["exporters"], "otlp": entries}}
    daemon.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    answer = httpx.post(f"{daemon.url}/-/reload", timeout=60)
    assert answer.status_code == 200, answer.text
    assert "exporters.otlp" in answer.json()["applied"], answer.text


def group_state(cluster: KafkaCluster, group: str) -> tuple[str, int]:
    """A consumer group's state and how many members it has."""
    admin = AdminClient({"bootstrap.servers": ",".join(cluster.bootstrap)})
    (described,) = admin.describe_consumer_groups([group]).values()
    group_description = described.result(timeout=15)
    return str(group_description.state.name), len(group_description.members)


def test_exporters_added_changed_and_removed_by_reload(
    pair: Pair, sink: OtlpSink, kafka_cluster: KafkaCluster
) -> None:
    """With the Kafka queue too: an exporter added by a reload of each instance is one
    consumer group across them, for what is accepted from then on; one changed goes on
    from its offsets (under load: nothing accepted is lost to it); one removed from both
    leaves the group empty."""
    a, b = pair.a, pair.b
    extra, moved = OtlpSink().start(), OtlpSink().start()
    group = f"{pair.config['queue']['kafka']['group_prefix']}-extra/traces"
    try:
        before = [native_span(f"before-{i}") for i in range(10)]
        assert post(a, "spans", before).status_code == 202
        posted = time.monotonic()
        sink.wait_for_span_ids({s["span_id"] for s in before}, timeout=30)
        # (an exporter added reads what was written from START_MARGIN before the reload)
        time.sleep(max(0.0, posted + START_MARGIN + 0.5 - time.monotonic()))
        for daemon in (a, b):
            reload_otlp(daemon, extra.grpc_endpoint)
        added = [native_span(f"added-{i}") for i in range(40)]
        assert post(a, "spans", added[:20]).status_code == 202
        assert post(b, "spans", added[20:]).status_code == 202
        extra.wait_for_span_ids({s["span_id"] for s in added}, timeout=60)
        assert len([s for s in extra.spans() if s.name.startswith("added-")]) == len(added)
        assert not {s["span_id"] for s in before} & extra.span_ids()
        poll(lambda: group_state(kafka_cluster, group), lambda got: got == ("STABLE", 2),
             timeout=30, interval=0.3, what="both instances in the added exporter's group")

        with Load([a, b]) as load:
            time.sleep(1)
            for daemon in (a, b):
                reload_otlp(daemon, moved.grpc_endpoint)
            time.sleep(1)
        assert load.accepted
        sink.wait_for_span_ids(load.accepted, timeout=60)
        poll(lambda: load.accepted - extra.span_ids() - moved.span_ids(), lambda left: not left,
             timeout=60, interval=0.3, what="every span accepted under the change delivered")

        for daemon in (a, b):
            reload_otlp(daemon)
        poll(lambda: group_state(kafka_cluster, group), lambda got: got == ("EMPTY", 0),
             timeout=30, interval=0.3, what="the removed exporter's group left")
        after = [native_span(f"after-{i}") for i in range(10)]
        assert post(b, "spans", after).status_code == 202
        sink.wait_for_span_ids({s["span_id"] for s in after}, timeout=30)
        assert not {s["span_id"] for s in after} & (extra.span_ids() | moved.span_ids())
    finally:
        extra.stop()
        moved.stop()


def test_one_broker_killed_under_load_loses_nothing(
    pair: Pair, sink: OtlpSink, kafka_cluster: KafkaCluster
) -> None:
    with Load([pair.a, pair.b]) as load:
        time.sleep(1.5)
        kafka_cluster.kill9(2)
        during = len(load.accepted)
        # Ingestion goes on with two brokers of three in sync (min.insync.replicas 2), once
        # the partitions broker 2 led have new leaders (brief 503s allowed meanwhile).
        poll(lambda: len(load.accepted), lambda n: n >= during + 200, timeout=60,
             interval=0.2, what="2xx with a broker down")
        kafka_cluster.restart(2)
    assert load.accepted
    sink.wait_for_span_ids(load.accepted, timeout=90)


def test_all_brokers_down_means_503_then_it_resumes(
    pair: Pair, sink: OtlpSink, kafka_cluster: KafkaCluster
) -> None:
    a = pair.a
    kafka_cluster.stop()
    # Refused while Kafka is unreachable: 503 with Retry-After, never a 2xx; /readyz 503.
    poll(lambda: httpx.get(f"{a.url}/readyz", timeout=10).status_code, lambda s: s == 503,
         timeout=30, interval=0.3, what="readyz 503")
    refused = [native_span("refused") for _ in range(5)]
    answer = post(a, "spans", refused, timeout=30)
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    answer = post(pair.b, "metrics", [{"name": "down_probe", "type": "gauge", "value": 1,
                                       "service": "p"}], timeout=30)
    assert answer.status_code == 503
    assert sample(scrape(a), "flext_collector_kafka_connected") == 0

    ensure_running(kafka_cluster)
    # Back by itself: ready again, accepting and delivering.
    for daemon in (a, pair.b):
        poll(lambda d=daemon: httpx.get(f"{d.url}/readyz", timeout=10).status_code,
             lambda s: s == 200, timeout=60, interval=0.3, what="readyz 200")
    after = [native_span("after") for _ in range(10)]
    answer = poll(lambda: post(a, "spans", after, timeout=30), lambda r: r.status_code == 202,
                  timeout=30, interval=0.5, what="202 again")
    assert answer.status_code == 202
    sink.wait_for_span_ids({s["span_id"] for s in after}, timeout=60)
    assert not {s["span_id"] for s in refused} & sink.span_ids()


def test_instance_killed_under_load_its_spans_and_alerts_are_delivered_by_the_other(
    pair: Pair, sink: OtlpSink, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    """Last in the module: A is killed (then started again for the fixture's teardown).
    Alertmanager is down until A is dead, so what reaches it comes from B."""
    a, b = pair.a, pair.b
    sink.fail()  # nothing is delivered (nor committed) before A dies
    alertmanager.stop()
    with Load([a]) as load_a:
        assert post(a, "alerts", [{"name": "KafkaTakenByA", "service": "web"}]).status_code \
            == 202
        time.sleep(2)
    assert load_a.accepted
    assert "KafkaTakenByA" in held_alert_names(a)
    a.kill9()
    sink.recover()
    assert post(b, "alerts", [{"name": "KafkaTakenByB", "service": "web"}]).status_code == 202
    alertmanager.start()
    for name in ("KafkaTakenByA", "KafkaTakenByB"):
        notified(webhook, name, FIRED_THEN_RESOLVED[:1])
    assert post(b, "alerts", [{"name": "KafkaTakenByA", "service": "web",
                               "status": "resolved"}]).status_code == 202
    notified(webhook, "KafkaTakenByA", FIRED_THEN_RESOLVED)
    # B takes A's partitions once A's session expires and delivers everything A accepted.
    sink.wait_for_span_ids(load_a.accepted, timeout=90)
    # A comes back with the state it last wrote (the alert firing) and catches up with the
    # log before it sends: Alertmanager never holds the resolved alert firing again.
    fired_again = threading.Event()
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            if alertmanager.alerts(filter=['alertname="KafkaTakenByA"']):
                fired_again.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        a.start()
        poll(lambda: held_alert_names(a), lambda names: "KafkaTakenByA" not in names,
             timeout=30, interval=0.2, what="A caught up with the resolve")
        time.sleep(3)
    finally:
        watching.set()
        watcher.join(10)
    assert not fired_again.is_set()
    assert webhook.notifications("KafkaTakenByA") == FIRED_THEN_RESOLVED

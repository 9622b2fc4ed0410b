"""Where an exporter added while running starts reading (`start_offsets`), against the real
cluster: the records written since it was configured, including one that lands while its
start is being looked up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from flext_observability.pipeline.kafka.queue import start_offsets
from helpers.kafka import KafkaCluster

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


class WrittenDuringLookup(Consumer):
    """A consumer during whose time lookup a producer writes one record to each partition
    looked up (what another instance's request does when it lands at that moment)."""

    def __init__(self, settings: dict[str, Any], producer: Producer) -> None:
        super().__init__(settings)
        self.producer = producer

    def offsets_for_times(self, parts: list[TopicPartition], timeout: float) -> Any:
        found = super().offsets_for_times(parts, timeout)
        for part in parts:
            self.producer.produce(part.topic, b"during", partition=part.partition)
        assert self.producer.flush(TIMEOUT) == 0
        return found


@pytest.fixture
def topic(kafka_cluster: KafkaCluster) -> Iterator[str]:
    name = f"starts-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": ",".join(kafka_cluster.bootstrap)})
    admin.create_topics([NewTopic(name, 2, 3)])[name].result(TIMEOUT)
    yield name
    admin.delete_topics([name])[name].result(TIMEOUT)


def test_a_record_written_while_the_start_is_looked_up_is_read(
    kafka_cluster: KafkaCluster, topic: str
) -> None:
    brokers = ",".join(kafka_cluster.bootstrap)
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "log_level": 0})
    producer.produce(topic, b"before", partition=0)  # written before `since`: not for it
    assert producer.flush(TIMEOUT) == 0
    time.sleep(1.0)
    since = time.time() - 0.5
    producer.produce(topic, b"since", partition=0)
    assert producer.flush(TIMEOUT) == 0
    consumer = WrittenDuringLookup(
        {"bootstrap.servers": brokers, "group.id": f"g-{uuid.uuid4().hex}", "log_level": 0},
        producer,
    )
    try:
        starts = start_offsets(
            consumer, [TopicPartition(topic, 0), TopicPartition(topic, 1)], since, TIMEOUT
        )
    finally:
        consumer.close()
    # Partition 0: the record written since (offset 1), not the one before it. Partition 1
    # held nothing written since: its start is its end before the lookup, so the record
    # written during the lookup (offset 0) is read.
    assert starts == {(topic, 0): 1, (topic, 1): 0}

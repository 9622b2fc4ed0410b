"""One real 3-broker Kafka cluster for the session (replication factor 3, min.insync.replicas
2), started by scripts/kafka-local.sh from Apache Kafka's jars (`make peers`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from helpers.kafka import KafkaCluster


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is needed for the Kafka tests (Java 17 and Maven)",
                        pytrace=False)
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"), brokers=3).start()
    yield cluster
    cluster.stop()

"""`queue.kafka` (CONTRACT §9): defaults, and every bad value named with its YAML path."""

from __future__ import annotations

import textwrap

import pytest

from flext_observability.config import ConfigError, load_config


def test_the_collectors_defaults_and_settable_topics(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent("""
        queue:
          kind: kafka
          kafka: {brokers: ["k1:9092", "k2:9092"], produce_timeout: 500ms,
                  topics: {spans: traces_in}}
    """))
    kafka = load_config(path).queue.kafka
    assert kafka.brokers == ["k1:9092", "k2:9092"]
    assert kafka.produce_timeout == 0.5
    assert (kafka.topics.spans, kafka.topics.metrics, kafka.topics.logs) == (
        "traces_in", "otlp_metrics", "otlp_logs")
    assert (kafka.replication_factor, kafka.min_insync_replicas, kafka.partitions) == (3, 2, 12)


def test_bad_kafka_settings_are_named(tmp_path):
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent("""
        queue:
          kind: kafka
          kafka:
            brokers: ["no-port"]
            topics: {spans: same, metrics: same}
            partitions: 0
            produce_timeout: soon
            acks: 1
    """))
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    text = "\n".join(failed.value.errors)
    for expected in ("queue.kafka.brokers.0:", "queue.kafka.topics: each signal needs a topic "
                     "of its own; shared: same", "queue.kafka.partitions:",
                     "queue.kafka.produce_timeout: 'soon' is not a duration",
                     "queue.kafka.acks: unknown key"):
        assert expected in text, text

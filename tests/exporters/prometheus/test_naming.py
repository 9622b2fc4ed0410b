"""Cases from the Collector's pkg/translator/prometheus tests (normalize_name_test.go,
normalize_label_test.go) and the OpenTelemetry Prometheus compatibility specification."""

from __future__ import annotations

import pytest

from flext_observability.exporters.prometheus.naming import metric_name, native_metric_name
from flext_observability.models.labels import label_name

GAUGE = {"kind": "gauge", "monotonic": False}
COUNTER = {"kind": "sum", "monotonic": True}
UP_DOWN = {"kind": "sum", "monotonic": False}
HISTOGRAM = {"kind": "histogram", "monotonic": False}
SUMMARY = {"kind": "summary", "monotonic": False}


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("system.filesystem.usage", "By", GAUGE, "system_filesystem_usage_bytes"),
        ("system.io", "By", COUNTER, "system_io_bytes_total"),
        ("network_transmitted_bytes_total", "By", COUNTER, "network_transmitted_bytes_total"),
        ("\t system.filesystem.usage       ", "  By\t", GAUGE, "system_filesystem_usage_bytes"),
        ("system.network.dropped", "{packets}", GAUGE, "system_network_dropped"),
        ("system.network.dropped", "{packets}", COUNTER, "system_network_dropped_total"),
        ("system.network.dropped", "packets", GAUGE, "system_network_dropped_packets"),
        ("system.network.packets.dropped", "packets", GAUGE, "system_network_packets_dropped"),
        ("system.network.packets", "packets", GAUGE, "system_network_packets"),
        ("system.network.packets", "packets", COUNTER, "system_network_packets_total"),
        ("hw.gpu.memory.utilization", "1", GAUGE, "hw_gpu_memory_utilization_ratio"),
        ("hw.fan.speed_ratio", "1", GAUGE, "hw_fan_speed_ratio"),
        ("objects", "1", COUNTER, "objects_total"),
        ("hw.cpu.speed_limit", "Hz", GAUGE, "hw_cpu_speed_limit_hertz"),
        ("broken.metric.speed", "km/h", GAUGE, "broken_metric_speed_km_per_hour"),
        ("astro.light.speed_limit", "m/s", GAUGE, "astro_light_speed_limit_meters_per_second"),
        ("broken.metric.success_ratio", "%", GAUGE, "broken_metric_success_ratio_percent"),
        ("broken.metric.success_percent", "%", GAUGE, "broken_metric_success_percent"),
        ("test.metric.no_unit", "", GAUGE, "test_metric_no_unit"),
        ("test.metric.spaces", "   \t  ", GAUGE, "test_metric_spaces"),
        ("unsupported.metric.temperature", "°F", GAUGE, "unsupported_metric_temperature_F"),
        ("unsupported.metric.weird", "+=.:,!* & #", GAUGE, "unsupported_metric_weird"),
        (
            "unsupported.metric.redundant",
            "__test $/°C",
            GAUGE,
            "unsupported_metric_redundant_test_per_C",
        ),
        (
            "active_directory.ds.replication.network.io",
            "By",
            COUNTER,
            "active_directory_ds_replication_network_io_bytes_total",
        ),
        (
            "active_directory.ds.replication.object.rate",
            "{objects}/s",
            GAUGE,
            "active_directory_ds_replication_object_rate_per_second",
        ),
        ("apache.current_connections", "connections", GAUGE, "apache_current_connections"),
        ("apache.workers", "connections", GAUGE, "apache_workers_connections"),
        ("apache.requests", "1", COUNTER, "apache_requests_total"),
        (
            "bigip.virtual_server.request.count",
            "{requests}",
            COUNTER,
            "bigip_virtual_server_request_count_total",
        ),
        ("system.cpu.utilization", "1", GAUGE, "system_cpu_utilization_ratio"),
        ("system.disk.operation_time", "s", COUNTER, "system_disk_operation_time_seconds_total"),
        ("system.cpu.load_average.15m", "1", GAUGE, "system_cpu_load_average_15m_ratio"),
        ("memcached.operation_hit_ratio", "%", GAUGE, "memcached_operation_hit_ratio_percent"),
        (
            "mongodbatlas.process.asserts",
            "{assertions}/s",
            GAUGE,
            "mongodbatlas_process_asserts_per_second",
        ),
        (
            "mongodbatlas.process.journaling.data_files",
            "MiBy",
            GAUGE,
            "mongodbatlas_process_journaling_data_files_mebibytes",
        ),
        (
            "mongodbatlas.process.network.io",
            "By/s",
            GAUGE,
            "mongodbatlas_process_network_io_bytes_per_second",
        ),
        (
            "mongodbatlas.process.oplog.rate",
            "GiBy/h",
            GAUGE,
            "mongodbatlas_process_oplog_rate_gibibytes_per_hour",
        ),
        (
            "mongodbatlas.process.db.query_targeting.scanned_per_returned",
            "{scanned}/{returned}",
            GAUGE,
            "mongodbatlas_process_db_query_targeting_scanned_per_returned",
        ),
        ("nginx.requests", "requests", GAUGE, "nginx_requests"),
        ("nsxt.node.memory.usage", "KBy", GAUGE, "nsxt_node_memory_usage_kilobytes"),
        ("redis.latest_fork", "us", GAUGE, "redis_latest_fork_microseconds"),
        ("3.14 digits", "", GAUGE, "_3_14_digits"),
        ("envoy__rule_engine_zlib_buf_error", "", GAUGE, "envoy_rule_engine_zlib_buf_error"),
        (":foo::bar", "", GAUGE, "foo_bar"),
        (":foo::bar", "", COUNTER, "foo_bar_total"),
        # `_total` belongs to monotonic sums, `_ratio` to gauges only
        ("process.threads", "{threads}", UP_DOWN, "process_threads"),
        ("queue.fill", "1", UP_DOWN, "queue_fill"),
        ("http.server.request.duration", "s", HISTOGRAM, "http_server_request_duration_seconds"),
        ("rpc.latency", "ms", SUMMARY, "rpc_latency_milliseconds"),
        ("cache.hits", "1", HISTOGRAM, "cache_hits"),
        ("disk.io", "By", UP_DOWN, "disk_io_bytes"),
    ],
)
def test_metric_name(name: str, unit: str, kind: dict, expected: str):
    assert metric_name(name, unit, **kind) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("test", "test"),
        # a single leading `_` is kept, as otelcol does (its PermissiveLabelSanitization)
        ("_test", "_test"),
        ("0test", "key_0test"),
        ("http.method", "http_method"),
        ("service.instance.id", "service_instance_id"),
        ("k8s.pod.name", "k8s_pod_name"),
        ("Host-Name", "Host_Name"),
        # the specification collapses runs of `_`; the Go translator gives `test__` here
        ("test_/", "test_"),
        ("a..b", "a_b"),
        # the `__` prefix is reserved by Prometheus: collapsed to one `_` (the Go
        # translator passes it through, and the Prometheus client then rejects the metric)
        ("__test", "_test"),
        ("é", "_"),
        ("", "key"),
    ],
)
def test_label_name(key: str, expected: str):
    assert label_name(key) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("http.server.duration", "http_server_duration"),
        ("http_requests_total", "http_requests_total"),
        ("job:http_requests:rate5m", "job:http_requests:rate5m"),
        ("envoy__rule", "envoy__rule"),
        ("_private", "_private"),
        ("queue.depth_.max", "queue_depth_max"),
        ("1st.metric", "_1st_metric"),
        ("cpu-usage", "cpu_usage"),
    ],
)
def test_native_metric_name(name: str, expected: str):
    assert native_metric_name(name) == expected

"""`exporters.otlp` in the config file and the environment; `exporters.jaeger` as its preset."""

import textwrap

import pytest

from flext_observability.config import ConfigError, load_config
from flext_observability.exporters.jaeger.exporter import jaeger_preset


def load(tmp_path, text, environ=None):
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ or {})


def test_an_entry_takes_every_signal_and_the_jaeger_defaults(tmp_path):
    config = load(tmp_path, """
        exporters:
          otlp:
            - {name: otelcol, endpoint: "http://otelcol:4317"}
            - name: logs-only
              endpoint: https://logs.example.com:4318
              protocol: http/protobuf
              signals: [logs]
              headers: {x-api-key: secret}
              compression: none
              timeout: 2s
    """)
    first, second = config.exporters.otlp
    assert (first.signals, first.protocol, first.compression, first.timeout) == (
        ["traces", "metrics", "logs"], "grpc", "gzip", 10.0)
    assert (second.signals, second.headers, second.compression, second.timeout) == (
        ["logs"], {"x-api-key": "secret"}, "none", 2.0)
    assert config.exports("traces")
    assert config.exports("logs")
    assert config.accepts_spans()


def test_logs_and_spans_are_exported_only_when_an_entry_takes_them(tmp_path):
    config = load(tmp_path, """
        exporters:
          otlp: [{name: m, endpoint: "http://m:4317", signals: [metrics]}]
    """)
    assert config.exports("metrics")
    assert not config.exports("logs")
    assert not config.exports("traces")
    assert not config.accepts_spans()
    assert load(tmp_path, "exporters: {jaeger: {endpoint: 'http://j:4317'}}").exports("traces")


@pytest.mark.parametrize(("entries", "message"), [
    ("[{name: a, endpoint: 'http://a:4317'}, {name: a, endpoint: 'http://b:4317'}]",
     "two exporters are named 'a'"),
    ("[{name: jaeger, endpoint: 'http://a:4317'}]", "'jaeger' is reserved"),
    ("[{name: 'a b', endpoint: 'http://a:4317'}]", "is not an exporter name"),
    ("[{name: a, endpoint: 'grpc://a:4317'}]", "is not a URL"),
    ("[{name: a}]", "exporters.otlp.0.endpoint: Field required"),
    ("[{name: a, endpoint: 'http://a:4317', signals: [spans]}]", "exporters.otlp.0.signals.0"),
    ("[{name: a, endpoint: 'http://a:4317', signals: []}]", "at least 1 item"),
    ("[{name: a, endpoint: 'http://a:4317', signals: [logs, logs]}]", "at most once"),
    ("[{name: a, endpoint: 'http://a:4317', compression: zstd}]", "'gzip' or 'none'"),
    ("[{name: a, endpoint: 'https://a:4317', tls: {insecure_skip_verify: true}}]",
     "not available with protocol grpc"),
    ("[{name: a, endpoint: 'http://a:4317', bogus: 1}]", "exporters.otlp.0.bogus: unknown key"),
])
def test_a_bad_entry_is_refused_naming_where_and_why(tmp_path, entries, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f"exporters: {{otlp: {entries}}}")
    assert message in str(error.value)


def test_the_list_can_come_from_the_environment(tmp_path):
    config = load(tmp_path, "{}", {
        "FLEXT_OBS_EXPORTERS__OTLP": '[{"name": "env", "endpoint": "http://e:4318", '
                                     '"protocol": "http/protobuf", "signals": ["traces"]}]',
    })
    [entry] = config.exporters.otlp
    assert (entry.name, entry.protocol, entry.signals) == ("env", "http/protobuf", ["traces"])


def test_exporters_jaeger_is_a_traces_entry_named_jaeger(tmp_path):
    jaeger = load(tmp_path, """
        exporters:
          jaeger: {endpoint: "http://jaeger:4318", protocol: http/protobuf, num_senders: 3,
                   retry: {max_interval: 2s}}
    """).exporters.jaeger
    entry = jaeger_preset(jaeger)
    assert (entry.name, entry.signals, entry.endpoint, entry.protocol, entry.num_senders) == (
        "jaeger", ["traces"], "http://jaeger:4318", "http/protobuf", 3)
    assert entry.retry.max_interval == 2.0
    assert entry.compression == "gzip"

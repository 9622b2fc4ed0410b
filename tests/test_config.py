import textwrap

import pytest

from flext_observability.config import ConfigError, expand_env, load_config
from flext_observability.settings import parse_duration


def write(tmp_path, text):
    path = tmp_path / "collector.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_match_the_contract():
    config = load_config(None)
    assert (config.server.host, config.server.http_port, config.server.grpc_port) == (
        "127.0.0.1", 4318, 4317)
    assert config.server.max_body_bytes == 16 * 1024 * 1024
    assert config.queue.kind == "disk"
    assert str(config.queue.path) == ".flext-observability"
    assert (config.queue.max_items, config.queue.max_bytes) == (1_000_000, 1 << 30)
    assert config.exporters.prometheus.metric_expiration == 300
    assert config.exporters.jaeger.endpoint is None
    assert config.exporters.alertmanager.resend_interval == 60
    assert config.health.default_ttl_seconds == 60


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), (12, 12),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_every_error_is_reported_with_its_yaml_path(tmp_path):
    path = write(tmp_path, """
        server: {http_port: 99999, bogus: 1}
        queue: {max_items: 0, kind: tape}
        exporters:
          prometheus: {metric_expiration: soon}
    """)
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    text = "\n".join(failed.value.errors)
    for expected in ("server.http_port:", "server.bogus: unknown key", "queue.max_items:",
                     "queue.kind:", "exporters.prometheus.metric_expiration:"):
        assert expected in text
    assert len(failed.value.errors) == 5


def test_environment_overrides_the_file_and_env_refs_expand(tmp_path, monkeypatch):
    path = write(tmp_path, """
        server: {http_port: 5000, auth: {tokens: ["${TOKEN}"]}}
        exporters: {jaeger: {endpoint: "http://${JAEGER_HOST:-jaeger}:4317"}}
    """)
    monkeypatch.setenv("TOKEN", "s3cret")
    monkeypatch.setenv("FLEXT_OBS_SERVER__HTTP_PORT", "6000")
    monkeypatch.setenv("FLEXT_OBS_QUEUE__KIND", "memory")
    config = load_config(path)
    assert config.server.http_port == 6000
    assert config.server.auth.tokens == ["s3cret"]
    assert config.exporters.jaeger.endpoint == "http://jaeger:4317"
    assert config.queue.kind == "memory"


def test_expand_env_walks_lists_and_maps():
    assert expand_env({"a": ["${X}", 1], "b": "${Y:-d}"}, {"X": "x"}) == {"a": ["x", 1], "b": "d"}


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n"))


def _keys(model, prefix=""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from _keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _yaml_keys(node, prefix=""):
    for name, value in node.items():
        if isinstance(value, dict) and value:
            yield from _yaml_keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_the_example_config_shows_every_key_with_a_comment():
    from pathlib import Path

    import yaml

    from flext_observability.config import Config

    path = Path(__file__).resolve().parents[1] / "config" / "collector.yaml"
    assert set(_yaml_keys(yaml.safe_load(path.read_text()))) == set(_keys(Config))
    for line in path.read_text().splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            assert "#" in line or line.rstrip().endswith(":"), f"uncommented: {line}"


# One key of each section a component owns (receivers/config.py: server, its auth and
# cors, limits; pipeline/config.py: queue, its kafka; exporters/config.py), set in the file
# and by its FLEXT_OBS_* variable: the same value from either, the variable winning.
_COMPONENT_KEYS = [
    ("server:\n  read_timeout: 7s\n", "FLEXT_OBS_SERVER__READ_TIMEOUT", "9s",
     lambda c: c.server.read_timeout, 7.0, 9.0),
    ("server:\n  auth: {tokens: [aaa]}\n", "FLEXT_OBS_SERVER__AUTH__TOKENS", "bbb,ccc",
     lambda c: c.server.auth.tokens, ["aaa"], ["bbb", "ccc"]),
    ("server:\n  cors: {allowed_origins: ['https://a.example']}\n",
     "FLEXT_OBS_SERVER__CORS__ALLOWED_ORIGINS", "https://b.example",
     lambda c: c.server.cors.allowed_origins, ["https://a.example"], ["https://b.example"]),
    ("limits:\n  max_labels_per_metric: 10\n", "FLEXT_OBS_LIMITS__MAX_LABELS_PER_METRIC", "12",
     lambda c: c.limits.max_labels_per_metric, 10, 12),
    ("queue:\n  signal_share: 0.25\n", "FLEXT_OBS_QUEUE__SIGNAL_SHARE", "0.75",
     lambda c: c.queue.signal_share, 0.25, 0.75),
    ("queue:\n  kafka: {group_prefix: a}\n", "FLEXT_OBS_QUEUE__KAFKA__GROUP_PREFIX", "b",
     lambda c: c.queue.kafka.group_prefix, "a", "b"),
    ("exporters:\n  debug: {enabled: true}\n", "FLEXT_OBS_EXPORTERS__DEBUG__ENABLED", "false",
     lambda c: c.exporters.debug.enabled, True, False),
]


@pytest.mark.parametrize(("text", "variable", "value", "read", "from_file", "from_env"),
                         _COMPONENT_KEYS, ids=[k[1] for k in _COMPONENT_KEYS])
def test_a_component_section_is_set_by_file_and_environment_alike(
    tmp_path, text, variable, value, read, from_file, from_env
):
    path = write(tmp_path, text)
    assert read(load_config(path, {})) == from_file
    assert read(load_config(path, {variable: value})) == from_env
    assert read(load_config(None, {variable: value})) == from_env


def test_a_bad_value_in_a_component_section_names_its_variable_and_key():
    with pytest.raises(ConfigError) as failed:
        load_config(None, {"FLEXT_OBS_LIMITS__MAX_CONCURRENT_REQUESTS": "0",
                           "FLEXT_OBS_QUEUE__KIND": "tape"})
    assert failed.value.errors[0].startswith(
        "FLEXT_OBS_QUEUE__KIND (queue.kind): Input should be 'disk', 'memory' or 'kafka'")
    assert failed.value.errors[1].startswith(
        "FLEXT_OBS_LIMITS__MAX_CONCURRENT_REQUESTS (limits.max_concurrent_requests): ")


# server.max_items_per_request moved to limits (README "Limits": the old key is still read).
OLD, NEW = "server.max_items_per_request", "limits.max_items_per_request"


def test_a_moved_key_in_the_file_is_read_as_its_new_key_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, "server:\n  max_items_per_request: 5\n")
    config = load_config(path, {})
    assert config.limits.max_items_per_request == 5
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"config: {path}: {OLD} is deprecated, read as {NEW} "
        "(FLEXT_OBS_LIMITS__MAX_ITEMS_PER_REQUEST): rename it"
    ]


def test_a_moved_key_from_the_environment_is_read_as_a_number_naming_its_variable(caplog):
    config = load_config(None, {"FLEXT_OBS_SERVER__MAX_ITEMS_PER_REQUEST": "7"})
    assert config.limits.max_items_per_request == 7
    assert "FLEXT_OBS_SERVER__MAX_ITEMS_PER_REQUEST (server.max_items_per_request) is " \
           "deprecated" in caplog.text


def test_the_old_and_the_new_key_set_alike_is_one_value(tmp_path):
    path = write(tmp_path, "server: {max_items_per_request: 9}\n"
                           "limits: {max_items_per_request: 9}\n")
    assert load_config(path, {}).limits.max_items_per_request == 9


def test_the_old_and_the_new_key_set_differently_is_an_error_naming_both(tmp_path):
    path = write(tmp_path, "server: {max_items_per_request: 5}\n"
                           "limits: {max_items_per_request: 6}\n")
    with pytest.raises(ConfigError) as failed:
        load_config(path, {})
    assert failed.value.errors == [
        f"{path}: {OLD} and {path}: {NEW} are both set, to different values: {OLD} is now "
        f"{NEW}; set that one only"
    ]
    with pytest.raises(ConfigError) as failed:
        load_config(write(tmp_path, "server: {max_items_per_request: 5}\n"),
                    {"FLEXT_OBS_LIMITS__MAX_ITEMS_PER_REQUEST": "6"})
    assert failed.value.errors[0].startswith(
        f"{path}: {OLD} and FLEXT_OBS_LIMITS__MAX_ITEMS_PER_REQUEST ({NEW}) are both set")


def test_a_bad_value_of_a_moved_key_names_the_key_written(tmp_path):
    path = write(tmp_path, "server:\n  max_items_per_request: 0\n")
    with pytest.raises(ConfigError) as failed:
        load_config(path, {})
    assert failed.value.errors == [
        f"{path}: {OLD} (now {NEW}): Input should be greater than 0"
    ]
    with pytest.raises(ConfigError) as failed:
        load_config(None, {"FLEXT_OBS_SERVER__MAX_ITEMS_PER_REQUEST": "many"})
    assert failed.value.errors[0].startswith(
        f"FLEXT_OBS_SERVER__MAX_ITEMS_PER_REQUEST ({OLD} (now {NEW})): ")


def test_a_moved_key_beside_a_new_section_that_is_no_mapping_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, "server: {max_items_per_request: 5}\nlimits: 5\n")
    with pytest.raises(ConfigError) as failed:
        load_config(path, {})
    assert sorted(failed.value.errors) == [
        f"{path}: limits: Input should be a valid dictionary or instance of LimitsConfig",
        f"{path}: {OLD}: unknown key",
    ]

"""The OTLP examples from the OpenTelemetry repositories, copied into tests/fixtures/otlp."""

from pathlib import Path

OTLP_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"

"""Remote write 1.0's messages, built by the protobuf runtime from their descriptor.

The fields below are those of Prometheus' `prompb/remote.proto` and `prompb/types.proto`
that remote write 1.0 needs (samples; no exemplars, native histograms or metadata), with
the same names and numbers. Declaring them as a descriptor, instead of vendoring the
.proto and generating `_pb2` modules, needs no protoc at build time and no generated code
in the tree; the messages are still encoded by the protobuf runtime (upb), in a pool of
their own so that they never clash with another `prometheus` package.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_DESCRIPTOR = """
name: "flext_observability/prometheus/remote.proto"
package: "prometheus"
syntax: "proto3"
message_type {
  name: "WriteRequest"
  field { name: "timeseries" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".prometheus.TimeSeries" }
  reserved_range { start: 2 end: 3 }
}
message_type {
  name: "TimeSeries"
  field { name: "labels" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".prometheus.Label" }
  field { name: "samples" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".prometheus.Sample" }
}
message_type {
  name: "Label"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "Sample"
  field { name: "value" number: 1 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  field { name: "timestamp" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
}
"""


def _messages() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(text_format.Parse(_DESCRIPTOR, descriptor_pb2.FileDescriptorProto()))
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample")
    }


_MESSAGES = _messages()
# Message classes: their fields are not known to the type checker.
WriteRequest: Any = _MESSAGES["WriteRequest"]
TimeSeries: Any = _MESSAGES["TimeSeries"]

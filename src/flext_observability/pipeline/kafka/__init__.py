"""`queue.kind: kafka`: the queue on Apache Kafka, for N collector instances (CONTRACT §9)."""

"""The status page: `GET /`, one self-contained HTML page of the collector's state."""

"""The Pushgateway-compatible push API: `PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}`.

`path` reads the grouping key from the URL, `body` the pushed families from the text
format, `groups` holds the groups (admission, application, exposition, durable state),
`receiver` answers the HTTP requests and `build_pushgateway` wires them to a collector.
"""

"""Accepted means durable: kill -9 with the consumer held back loses nothing, with or
without an fsync a commit (a killed process's writes are the OS's already)."""

import concurrent.futures

import httpx
import pytest

from helpers.exposition import sample
from helpers.procs import poll


@pytest.mark.parametrize("fsync", [True, False])
def test_every_accepted_item_is_handled_after_kill_9(daemon_factory, fsync):
    held = daemon_factory({"exporters": {"prometheus": {"enabled": False}},
                           "queue": {"fsync": fsync}})
    url = f"{held.url}/api/v1/metrics"

    def send(i):
        batch = [{"name": "crash_items", "type": "counter", "value": 1, "service": "crash",
                  "labels": {"worker": str(i % 4)}} for _ in range(50)]
        return httpx.post(url, json=batch, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(40)))
    assert statuses == [202] * 40
    depth = sample(httpx.get(f"{held.url}/metrics").text, "flext_collector_queue_items",
                   signal="metrics")
    assert depth == 2000
    held.kill9()

    restarted = daemon_factory(data_dir=held.data_dir)
    poll(lambda: httpx.get(f"{restarted.url}/metrics").text,
         lambda t: sum(sample(t, "crash_items_total", worker=str(w)) or 0
                       for w in range(4)) == 2000,
         20, 0.1, "all 2000 accepted items handled")
    # Released from the queue by the next checkpoint of the metric state (about 1 s).
    poll(lambda: httpx.get(f"{restarted.url}/metrics").text,
         lambda t: sample(t, "flext_collector_queue_items", signal="metrics") == 0,
         20, 0.1, "the handled items released")

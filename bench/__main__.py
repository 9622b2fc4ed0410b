"""`python -m bench [name ...]`: run benchmarks and print figures beside their baselines."""

from __future__ import annotations

import argparse
import importlib

from bench import common

BENCHES = {
    "native": "bench.native_ingest",
    "otlp": "bench.otlp_ingest",
    "e2e": "bench.e2e_spans",
    "sdk": "bench.sdk_overhead",
    "restart": "bench.restart",
    "otelcol": "bench.otelcol",
    "remote_write": "bench.remote_write",
    "pushgateway": "bench.pushgateway",
    "kafka": "bench.kafka",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run, of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=common.RUNS,
                        help="times each figure is taken; the median and the spread are printed")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    common.RUNS = max(1, args.runs)
    print(common.machine(), flush=True)
    for name in args.names or list(BENCHES):
        module = importlib.import_module(BENCHES[name])
        print(module.report(module.run(args.seconds)), flush=True)


if __name__ == "__main__":
    main()

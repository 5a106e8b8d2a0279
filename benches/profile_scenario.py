"""One bench scenario, in this process, against a fresh local endpoint: for profilers.

``make bench`` runs every client in a worker process of its own and prints only totals; this
runs one scenario of ``e2e_worker`` here, so that a profiler attached to this process sees the
client alone (the endpoint is a separate process):

    .venv/bin/python benches/profile_scenario.py "1 MiB prompts" --rounds 3
    py-spy record --native -o profile.svg -- .venv/bin/python benches/profile_scenario.py ...
    .venv/bin/python -X importtime ... ; python -m cProfile -s cumtime benches/...

It prints the client CPU per request of each round (``getrusage``, every thread) and the
fresh pages it faulted in, so that a change can be compared before and after on the same
machine, in the same minute.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from e2e_endpoint import EndpointProcess, write_trust_bundle
from e2e_worker import SCENARIOS, Meter, check_replies, make_client, warm_up
from nomyo_native import _loop_calls


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--client", default="ours", choices=["ours", "ours-sync", "openai"])
    parser.add_argument("--rounds", type=int, default=3, help="the scenario, this many times")
    parser.add_argument(
        "--build-budget",
        type=float,
        metavar="SECONDS",
        help="the async client's budget for building an answer on the loop "
        "(_loop_calls.LONE_BUILD_BUDGET; 0 hands every answer dear by its strings to a worker)",
    )
    args = parser.parse_args(argv)
    if args.build_budget is not None:
        _loop_calls.LONE_BUILD_BUDGET = args.build_budget
    scenario = SCENARIOS[args.scenario]
    with EndpointProcess() as endpoint, tempfile.TemporaryDirectory() as scratch:
        bundle = write_trust_bundle(endpoint.ca_path, Path(scratch) / "bundle.pem")
        job = {
            "client": args.client,
            "base_url": endpoint.base_url,
            "fingerprint": endpoint.fingerprint,
            "trust_bundle": str(bundle),
        }
        ask = make_client(job)
        warm_up(ask)
        prompts = [scenario.prompt(i) for i in range(scenario.requests)]
        for round_ in range(args.rounds):
            meter = Meter(endpoint.pid)
            for start in range(0, len(prompts), scenario.concurrency):
                batch = prompts[start : start + scenario.concurrency]
                with meter.timed():
                    replies = ask(batch, meter.latencies)
                check_replies(batch, replies)
            figures = meter.summary()
            print(
                f"round {round_ + 1}: {figures['cpu_per_request_ms']:.3f} ms client CPU per "
                f"request, p50 {figures['p50_ms']:.2f} ms, {figures['requests_per_s']:.0f} req/s, "
                f"{figures['minor_faults_per_request']:.0f} page faults per request"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

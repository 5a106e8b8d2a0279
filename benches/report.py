"""The table ``make bench`` prints, from pytest-benchmark's JSON; ratios and verdicts saved too.

Usage: ``python benches/report.py .cache/bench.json [--output .cache/bench-report.json]
[--markdown .cache/bench-table.md]``

Two sections:
- primitives: each benchmark group of the core suite, ours (``*_core``) beside pyca/cryptography
  (``*_pyca``), medians and the ratio;
- end to end: per scenario, every client the worker processes measured (``nomyo_native``'s
  async, sync and openai-SDK paths, ``nomyo==0.2.9``, the pyca floors) with client CPU per
  request, p50/p99 latency, requests/s, endpoint CPU per request, peak RSS of the soak and the
  first request's latency; the ratios ours/reference, and PASS/MISS for each target of issues
  6, 12, 14 and 15. ``--markdown`` writes the targets as the README's table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class E2ETarget:
    """``client``'s ``metric`` in ``scenario`` over ``against``'s (a client and a scenario;
    default: the reference in the same scenario) must be <= ``at_most`` or >= ``at_least``.

    ``paired``: each of the client's processes also measured ``against`` beside the scenario
    (``beside``, in the same minute); the ratio is the median of those processes' own ratios.
    """

    scenario: str
    metric: str
    description: str
    at_most: float | None = None
    at_least: float | None = None
    client: str = "ours"
    against: tuple[str, str] | None = None
    issue: int = 6
    paired: bool = False

    def bound(self) -> str:
        return f"<= {self.at_most:g}" if self.at_most is not None else f">= {self.at_least:g}"

    def met(self, ratio: float) -> bool:
        if self.at_most is not None:
            return ratio <= self.at_most
        assert self.at_least is not None
        return ratio >= self.at_least

    def yardstick(self) -> tuple[str, str]:
        return self.against or ("reference", self.scenario)


SMALL, SMALL_NON_ASCII = "sequential small requests", "sequential small non-ASCII"
MIB, MIB_NON_ASCII = "1 MiB prompts", "1 MiB non-ASCII prompts"
CONCURRENT = "16 concurrent requests"
FLOOR_SMALL, FLOOR_MIB = ("floor", "floor small"), ("floor", "floor 1 MiB")
FLOOR_MIB_NON_ASCII = ("floor", "floor 1 MiB non-ASCII")
CPU = "cpu_per_request_ms"

E2E_TARGETS = (
    # Issue 6: CPU per small request <= 1/8 of the reference's; requests/s at 16 concurrent
    # >= 3x; CPU per 1 MiB request <= 1/10.
    E2ETarget(SMALL, CPU, "client CPU per small request", 1 / 8),
    E2ETarget(CONCURRENT, "requests_per_s", "requests/s at 16 concurrent", at_least=3.0),
    # Issue 15: "no regression" of the 16-concurrent throughput, against the figure the issue
    # recorded before its work (a figure of another run: noise of a shared machine included).
    E2ETarget(
        CONCURRENT,
        "requests_per_s",
        "requests/s at 16 concurrent / before issue 15",
        at_least=1.0,
        against=("before issue 15", CONCURRENT),
        issue=15,
    ),
    E2ETarget(MIB, CPU, "client CPU per 1 MiB request", 1 / 10),
    # Issue 15: against the floors (the cryptography alone, measured in the same run, beside
    # each of ours' processes), peak RSS under a mixed-size soak against the reference's, the
    # first request after start-up.
    *(
        E2ETarget(scenario, CPU, description, bound, against=floor, issue=15, paired=True)
        for scenario, description, bound, floor in (
            (SMALL, "CPU per small request / floor", 1.6, FLOOR_SMALL),
            (SMALL_NON_ASCII, "CPU per small non-ASCII / floor", 1.6, FLOOR_SMALL),
            (MIB, "CPU per 1 MiB request / floor", 2.5, FLOOR_MIB),
            (MIB_NON_ASCII, "CPU per 1 MiB non-ASCII / floor", 2.5, FLOOR_MIB),
            # The same floor definition at that row's own sizes: the endpoint's answer is
            # ASCII-escaped JSON, about twice the request (see bench_floors).
            (MIB_NON_ASCII, "CPU per 1 MiB non-ASCII / its own floor", 2.5, FLOOR_MIB_NON_ASCII),
        )
    ),
    E2ETarget("soak", "peak_rss_mib", "peak RSS, 25 concurrent mixed sizes", 1.0, issue=15),
    E2ETarget("first request", "first_request_ms", "first request after start-up", 0.25, issue=15),
    # Issue 12: the sync client beside the async one; issue 14: the openai SDK path (each with
    # ours measured in its processes too).
    E2ETarget(
        SMALL,
        CPU,
        "sync client CPU per small request / async",
        1.25,
        client="ours-sync",
        against=("ours", SMALL),
        issue=12,
        paired=True,
    ),
    E2ETarget(
        SMALL,
        CPU,
        "openai SDK CPU per small request / ours",
        1.5,
        client="openai",
        against=("ours", SMALL),
        issue=14,
        paired=True,
    ),
)

E2E_METRICS = (
    ("cpu_per_request_ms", "CPU/req ms"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("requests_per_s", "req/s"),
    ("server_cpu_per_request_ms", "server CPU/req ms"),
    # Fresh pages the client faulted in: a megabyte buffer the allocator maps anew for every
    # request costs a fault per 4 KiB (glibc's mmap threshold trailing the sizes asked for).
    ("minor_faults_per_request", "faults/req"),
)
# Figures of the scenarios with a process each (soak, first request), shown beside the others.
EXTRA_METRICS = (("peak_rss_mib", "peak RSS MiB"), ("first_request_ms", "first request ms"))


def primitive_rows(benchmarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group: the core's median beside pyca's (benchmarks named ``test_*_core``/``_pyca``).

    A row is named after its group, or ``group/stem`` when a group holds several comparisons.
    """
    pairs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "e2e_scenario" in info or "e2e_runs" in info:
            continue
        full = bench["name"].removeprefix("test_")
        name = full.split("[")[0]
        side = "core" if name.endswith("_core") else "pyca" if name.endswith("_pyca") else "-"
        # Paired benchmarks meet on their stem; an unpaired one keeps its parameters, so that
        # each case of a parametrized benchmark gets its own row.
        stem = name.removesuffix("_core").removesuffix("_pyca") if side != "-" else full
        pairs.setdefault((bench.get("group") or "", stem), {})[side] = bench
    stems_per_group: dict[str, int] = {}
    for group, _ in pairs:
        stems_per_group[group] = stems_per_group.get(group, 0) + 1
    rows = []
    for (group, stem), sides in pairs.items():
        label = group if group and stems_per_group[group] == 1 else f"{group}/{stem}"
        core, pyca = sides.get("core"), sides.get("pyca")
        row: dict[str, Any] = {"benchmark": label}
        if core is None and pyca is None:
            row["median_ms"] = _median_ms(sides["-"])
        else:
            row["core_median_ms"] = _median_ms(core) if core else None
            row["pyca_median_ms"] = _median_ms(pyca) if pyca else None
            if core and pyca:
                row["ratio_core_over_pyca"] = row["core_median_ms"] / row["pyca_median_ms"]
        rows.append(row)
    return rows


def _median_ms(bench: dict[str, Any]) -> float:
    return float(bench["stats"]["median"]) * 1000.0


def e2e_runs(benchmarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every (client, scenario) figure set: ``extra_info["e2e_runs"]`` of the worker-driven
    benchmarks (one worker process reports several scenarios), or one scenario per benchmark."""
    runs: list[dict[str, Any]] = []
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        for run in info.get("e2e_runs", []):
            runs.append(run)
        if "e2e_scenario" in info:
            runs.append({**info, "client": info["e2e_client"], "scenario": info["e2e_scenario"]})
    return runs


def e2e_results(benchmarks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: every client's figures, the ratios ours/reference and the target verdicts."""
    repeated: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in e2e_runs(benchmarks):
        repeated.setdefault(run["scenario"], {}).setdefault(run["client"], []).append(run)
    scenarios = {
        scenario: {client: _median_run(runs) for client, runs in clients.items()}
        for scenario, clients in repeated.items()
    }
    results: dict[str, Any] = {}
    for scenario, clients in scenarios.items():
        entry: dict[str, Any] = {"clients": clients, "ratios": {}}
        ours, reference = clients.get("ours"), clients.get("reference")
        if ours and reference:
            for metric, _ in (*E2E_METRICS, *EXTRA_METRICS):
                if reference.get(metric) and ours.get(metric) is not None:
                    entry["ratios"][metric] = ours[metric] / reference[metric]
        results[scenario] = entry
    verdicts = []
    for target in E2E_TARGETS:
        ours = _figure(results, target.client, target.scenario, target.metric)
        theirs = _figure(results, *target.yardstick(), target.metric)
        ratio = ours / theirs if ours is not None and theirs else None
        verdict: dict[str, Any] = {
            **asdict(target),
            "ours": ours,
            "theirs": theirs,
            "ours_processes": _processes(results, target.client, target.scenario),
            "theirs_processes": _processes(results, *target.yardstick()),
            "ratio": ratio,
        }
        pairs = _paired_figures(repeated, target) if target.paired else []
        if pairs:
            # The yardstick's own processes stay beside, for comparison; the verdict is the pairs'.
            verdict.update(
                theirs_alone=theirs,
                theirs_alone_processes=verdict["theirs_processes"],
                ratio_alone=ratio,
                theirs=_lower_median([beside for _, beside in pairs]),
                theirs_processes=len(pairs),
                ratio=_lower_median([figure / beside for figure, beside in pairs]),
            )
            ratio = verdict["ratio"]
        verdict["verdict"] = "NOT RUN" if ratio is None else "PASS" if target.met(ratio) else "MISS"
        verdicts.append(verdict)
    return {"scenarios": results, "targets": verdicts}


def _paired_figures(
    repeated: dict[str, dict[str, list[dict[str, Any]]]], target: E2ETarget
) -> list[tuple[float, float]]:
    """(figure, yardstick beside it) of each of the client's processes that measured the
    target's yardstick in the same process (``beside``, keyed ``client/scenario``)."""
    key = "/".join(target.yardstick())
    pairs = []
    for run in repeated.get(target.scenario, {}).get(target.client, []):
        figure, beside = run.get(target.metric), run.get("beside", {}).get(key)
        if isinstance(figure, int | float) and isinstance(beside, int | float) and beside > 0:
            pairs.append((float(figure), float(beside)))
    return pairs


def _lower_median(values: list[float]) -> float:
    """The median, the lower middle one for an even count (as ``_median_run``)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


# Figures from outside this run that a target is held against: issue 15's table of "ours now".
RECORDED = {("before issue 15", CONCURRENT): {"requests_per_s": 228.0}}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a client's runs of one scenario (one process each), the run with the median of its
    scenario's headline figure (the lower middle one for an even count)."""
    if len(runs) == 1:
        return runs[0]
    metric = next((m for m in (CPU, "first_request_ms", "peak_rss_mib") if m in runs[0]), None)
    if metric is None:
        return runs[-1]
    ordered = sorted(runs, key=lambda run: float(run.get(metric) or 0.0))
    return {**ordered[(len(ordered) - 1) // 2], "processes": len(runs)}


def _figure(results: dict[str, Any], client: str, scenario: str, metric: str) -> float | None:
    recorded = RECORDED.get((client, scenario))
    if recorded is not None:
        return recorded.get(metric)
    value = results.get(scenario, {}).get("clients", {}).get(client, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _processes(results: dict[str, Any], client: str, scenario: str) -> int:
    """How many processes measured a figure (the report keeps their median)."""
    run = results.get(scenario, {}).get("clients", {}).get(client, {})
    return int(run.get("processes", 1))


def _fmt(value: float | None, width: int = 10) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.3f}" if abs(value) < 100 else f"{value:{width}.1f}"


# Order of the clients in the table: ours and the reference first, then ours' other paths.
CLIENT_ORDER = (
    "ours",
    "core",
    "tls-transport",
    "reference",
    "ours-sync",
    "openai",
    "ours-httpx-tls",
    "floor",
)


def _client_rank(name: str) -> tuple[int, str]:
    return (CLIENT_ORDER.index(name) if name in CLIENT_ORDER else len(CLIENT_ORDER), name)


def render(primitives: list[dict[str, Any]], e2e: dict[str, Any]) -> str:
    lines: list[str] = []
    if primitives:
        lines.append("Primitives (median ms; ratio = core / pyca, lower is better)")
        lines.append(f"{'benchmark':<44}{'core':>12}{'pyca':>12}{'ratio':>9}")
        for row in primitives:
            if "core_median_ms" not in row:
                lines.append(f"{row['benchmark']:<44}{_fmt(row['median_ms'], 12)}")
                continue
            ratio = row.get("ratio_core_over_pyca")
            lines.append(
                f"{row['benchmark']:<44}{_fmt(row['core_median_ms'], 12)}"
                f"{_fmt(row['pyca_median_ms'], 12)}{_fmt(ratio, 9)}"
            )
        lines.append("")
    if e2e["scenarios"]:
        lines.extend(_render_scenarios(e2e["scenarios"]))
        lines.extend(_tls_speed(e2e["scenarios"]))
        lines.append("")
        lines.append("Targets (issues 6, 12, 14, 15)")
        for t in e2e["targets"]:
            ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3f}"
            against = "ref" if t["against"] is None else t["against"][0]
            alone = ""
            if t.get("ratio_alone") is not None:
                alone = f"  (against its own processes: {t['ratio_alone']:.3f})"
            lines.append(
                f"  {t['description']:<44} {t['client']}/{against} {ratio:>7} "
                f"(target {_bound_text(t)})  {t['verdict']}{alone}"
            )
    return "\n".join(lines)


def _render_scenarios(scenarios: dict[str, Any]) -> list[str]:
    lines = ["End to end over HTTPS: nomyo_native (ours) vs nomyo 0.2.9 (reference)"]
    metrics = (*E2E_METRICS, *EXTRA_METRICS)
    shown = [
        (metric, label)
        for metric, label in metrics
        if any(metric in info for entry in scenarios.values() for info in entry["clients"].values())
    ]
    header = f"{'scenario':<28}{'client':<16}{'requests':>9}"
    header += "".join(f"{label:>18}" for _, label in shown)
    lines.append(header)
    for scenario, entry in scenarios.items():
        for name in sorted(entry["clients"], key=_client_rank):
            info = entry["clients"][name]
            line = f"{scenario:<28}{name:<16}{info.get('requests', 0):>9}"
            line += "".join(_fmt(info.get(metric), 18) for metric, _ in shown)
            lines.append(line)
        lines.extend(_shares(entry["clients"]))
        if entry["ratios"]:
            line = f"{'':<28}{'ours/ref':<16}{'':>9}"
            line += "".join(_fmt(entry["ratios"].get(m), 18) for m, _ in shown)
            lines.append(line)
    return lines


def _shares(clients: dict[str, Any]) -> list[str]:
    """Where ours' CPU goes: the core's seal + open, the TLS transport moving the same bytes,
    and what is left (HTTP, the protocol around the core, hand-offs between threads)."""
    core, ours, tls = clients.get("core"), clients.get("ours"), clients.get("tls-transport")
    if not (core and ours):
        return []
    rest = ours[CPU] - core[CPU]
    lines = [f"{'':<28}{'ours - core':<16}{'':>9}{_fmt(rest, 18)}"]
    if tls:
        lines.append(f"{'':<28}{'  - transport':<16}{'':>9}{_fmt(rest - tls[CPU], 18)}")
        openssl = tls.get("openssl_cpu_per_request_ms")
        if openssl is not None:
            lines.append(
                f"{'':<28}transport alone: core TLS {tls[CPU]:.3f} ms, the interpreter's "
                f"OpenSSL under asyncio {openssl:.3f} ms"
            )
    return lines


def _tls_speed(scenarios: dict[str, Any]) -> list[str]:
    """The interpreter's TLS record encryption beside the AES-GCM speed the floors assume."""
    for entry in scenarios.values():
        tls = entry["clients"].get("tls-transport")
        if tls and tls.get("tls_records_ms_per_mib") and tls.get("pyca_aes_gcm_ms_per_mib"):
            return [
                f"TLS records per MiB ({tls.get('tls_library', '?')}, the interpreter's ssl): "
                f"{tls['tls_records_ms_per_mib']:.3f} ms; AES-256-GCM per MiB in pyca's "
                f"OpenSSL (the floors'): {tls['pyca_aes_gcm_ms_per_mib']:.3f} ms"
            ]
    return []


def _bound_text(target: dict[str, Any]) -> str:
    if target["at_most"] is not None:
        return f"<= {target['at_most']:.3f}"
    return f">= {target['at_least']:.3f}"


def markdown(e2e: dict[str, Any]) -> str:
    """The README's benchmark table: one row per target, figures of this run."""
    rows = [
        "| measure | yardstick | ours | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for t in e2e["targets"]:
        client = t["against"][0] if t["against"] else "reference"
        unit = _unit(t["metric"])
        yardstick = f"{_short(client)} {_md(t['theirs'], unit)}{_median_of(t['theirs_processes'])}"
        if "theirs_alone" in t:
            yardstick = (
                f"{_short(client)} beside {_short(t['client'])} {_md(t['theirs'], unit)}"
                f"{_median_of(t['theirs_processes'])}; alone {_md(t['theirs_alone'], unit)}"
                f"{_median_of(t['theirs_alone_processes'])}"
            )
        ours = f"{_short(t['client'])} {_md(t['ours'], unit)}{_median_of(t['ours_processes'])}"
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        rows.append(
            f"| {t['description']} | {yardstick} | {ours} | {ratio} | "
            f"{_bound_text(t).replace('<=', '&le;').replace('>=', '&ge;')}: {t['verdict']} |"
        )
    return "\n".join(rows)


def _median_of(processes: int) -> str:
    return f" (median of {processes})" if processes > 1 else ""


def _unit(metric: str) -> str:
    return {"requests_per_s": "req/s", "peak_rss_mib": "MiB"}.get(metric, "ms")


def _short(client: str) -> str:
    return {"reference": "nomyo 0.2.9", "floor": "floor", "ours": "ours"}.get(client, client)


def _md(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--output", type=Path, help="where to write ratios and verdicts (JSON)")
    parser.add_argument(
        "--markdown", type=Path, help="where to write the README's table of targets (Markdown)"
    )
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.bench_json.read_text(encoding="utf-8"))
        benchmarks = data["benchmarks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"report: cannot read {args.bench_json}: {exc}", file=sys.stderr)
        return 2
    primitives = primitive_rows(benchmarks)
    e2e = e2e_results(benchmarks)
    print(render(primitives, e2e))
    if args.markdown is not None and e2e["targets"]:
        args.markdown.write_text(markdown(e2e) + "\n", "utf-8")
        print(f"\nwritten: {args.markdown}")
    if args.output is not None:
        summary = {
            "source": str(args.bench_json),
            "datetime": data.get("datetime"),
            "machine": {
                k: data.get("machine_info", {}).get(k) for k in ("cpu", "python_version", "node")
            },
            "primitives": primitives,
            "e2e": e2e,
        }
        args.output.write_text(json.dumps(summary, indent=2, default=str) + "\n", "utf-8")
        print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

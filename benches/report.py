"""The table ``make bench`` prints, from pytest-benchmark's JSON; ratios and verdicts saved too.

Usage: ``python benches/report.py .cache/bench.json [--output .cache/bench-report.json]``

Two sections:
- primitives: each benchmark group of the core suite, ours (``*_core``) beside pyca/cryptography
  (``*_pyca``), medians and the ratio;
- end to end: per scenario, ``nomyo_native`` beside ``nomyo==0.2.9`` (client CPU per request,
  p50/p99 latency, requests/s, endpoint CPU per request), the ratios ours/reference, and
  PASS/MISS for each target of issue 6.
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
    """``ours/reference`` of ``metric`` must be <= ``at_most`` or >= ``at_least``."""

    scenario: str
    metric: str
    description: str
    at_most: float | None = None
    at_least: float | None = None

    def bound(self) -> str:
        return f"<= {self.at_most:g}" if self.at_most is not None else f">= {self.at_least:g}"

    def met(self, ratio: float) -> bool:
        if self.at_most is not None:
            return ratio <= self.at_most
        assert self.at_least is not None
        return ratio >= self.at_least


# Issue 6: CPU per small request <= 1/8 of the reference's; requests/s at 16 concurrent >= 3x;
# CPU per 1 MiB request <= 1/10.
E2E_TARGETS = (
    E2ETarget(
        "sequential small requests", "cpu_per_request_ms", "client CPU per small request", 1 / 8
    ),
    E2ETarget(
        "16 concurrent requests", "requests_per_s", "requests/s at 16 concurrent", at_least=3.0
    ),
    E2ETarget("1 MiB prompts", "cpu_per_request_ms", "client CPU per 1 MiB request", 1 / 10),
)

E2E_METRICS = (
    ("cpu_per_request_ms", "CPU/req ms"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("requests_per_s", "req/s"),
    ("server_cpu_per_request_ms", "server CPU/req ms"),
)


def primitive_rows(benchmarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group: the core's median beside pyca's (benchmarks named ``test_*_core``/``_pyca``).

    A row is named after its group, or ``group/stem`` when a group holds several comparisons.
    """
    pairs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for bench in benchmarks:
        if "e2e_scenario" in bench.get("extra_info", {}):
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


def e2e_results(benchmarks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: both clients' figures, the ratios ours/reference and the target verdicts."""
    scenarios: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "e2e_scenario" in info:
            scenarios.setdefault(info["e2e_scenario"], {})[info["e2e_client"]] = info
    results: dict[str, Any] = {}
    for scenario, clients in scenarios.items():
        entry: dict[str, Any] = {"clients": clients, "ratios": {}}
        ours, reference = clients.get("ours"), clients.get("reference")
        if ours and reference:
            for metric, _ in E2E_METRICS:
                if reference.get(metric):
                    entry["ratios"][metric] = ours[metric] / reference[metric]
        results[scenario] = entry
    verdicts = []
    for target in E2E_TARGETS:
        ratio = results.get(target.scenario, {}).get("ratios", {}).get(target.metric)
        verdicts.append(
            {
                **asdict(target),
                "ratio": ratio,
                "verdict": "NOT RUN" if ratio is None else "PASS" if target.met(ratio) else "MISS",
            }
        )
    return {"scenarios": results, "targets": verdicts}


def _fmt(value: float | None, width: int = 10) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.3f}" if abs(value) < 100 else f"{value:{width}.1f}"


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
        lines.append("End to end over HTTPS: nomyo_native (ours) vs nomyo 0.2.9 (reference)")
        header = f"{'scenario':<28}{'client':<16}{'requests':>9}"
        header += "".join(f"{label:>18}" for _, label in E2E_METRICS)
        lines.append(header)
        for scenario, entry in e2e["scenarios"].items():
            # ours and the reference first, then variants (e.g. ours on httpx's default TLS)
            names = sorted(entry["clients"], key=lambda n: (n != "ours", n != "reference", n))
            for name in names:
                info = entry["clients"][name]
                line = f"{scenario:<28}{name:<16}{info['requests']:>9}"
                line += "".join(_fmt(info[metric], 18) for metric, _ in E2E_METRICS)
                lines.append(line)
            if entry["ratios"]:
                line = f"{'':<28}{'ours/ref':<16}{'':>9}"
                line += "".join(_fmt(entry["ratios"].get(m), 18) for m, _ in E2E_METRICS)
                lines.append(line)
        lines.append("")
        lines.append("Targets (issue 6)")
        for t in e2e["targets"]:
            ratio = "-" if t["ratio"] is None else f"{t['ratio']:.3f}"
            lines.append(
                f"  {t['description']:<36} ours/ref {ratio:>7} "
                f"(target {_bound_text(t)})  {t['verdict']}"
            )
    return "\n".join(lines)


def _bound_text(target: dict[str, Any]) -> str:
    if target["at_most"] is not None:
        return f"<= {target['at_most']:.3f}"
    return f">= {target['at_least']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--output", type=Path, help="where to write ratios and verdicts (JSON)")
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

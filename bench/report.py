"""The benchmark's results as a markdown report, three plots, the goals and one line per scenario."""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.figure import Figure

LATEST = re.compile(r"(<!-- latest -->\n).*?(<!-- /latest -->)", re.S)
PREFERRED_P99_GOAL_S = 1.5
SUSTAINED_GOAL_RPS, SUSTAINED_GOAL_SCENARIO = 5000, "rendezvous-1+2"
MARGINAL_GOAL = 0.30


def _step(scenario: dict, rate: int) -> dict | None:
    return next((s for s in scenario["steps"] if s["offered_rps"] == rate), None)


def _by_name(results: dict) -> dict[str, dict]:
    return {s["scenario"]: s for s in results["scenarios"]}


def _ratio(value, base) -> str:
    return f"{value / base:.2f}" if value is not None and base else "-"


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def marginal_costs(results: dict, rate: int) -> dict:
    """CPU per 1,000 requests that one more challenger adds, as a share of champion-only's, at a load.
    Only from loads a scenario sustained: a saturated one's CPU is the machine's limit, not its cost."""
    scenarios, cpu = _by_name(results), {}
    for name, s in scenarios.items():
        if (step := _step(s, rate)) is not None and step["bounded"]:
            cpu[name] = step["cpu_s_per_1k"]
    base = cpu.get("champion-only")
    ladder = [cpu.get(f"rendezvous-1+{k}") for k in (1, 2, 3)]
    added = [b - a for a, b in zip(ladder, ladder[1:]) if a is not None and b is not None]
    marginal = sum(added) / len(added) if added else None
    duplicate = cpu.get("duplicate-pipelines")
    return {
        "rate": rate,
        "champion_only_cpu_s_per_1k": base,
        "challenger_cpu_s_per_1k": round(marginal, 3) if marginal is not None else None,
        "challenger_share": round(marginal / base, 3) if marginal is not None and base else None,
        "duplicate_share": round((duplicate - base) / base, 3) if duplicate is not None and base else None,
    }


def goals(results: dict) -> list[tuple[str, bool | None, str]]:
    """(goal, met, what was measured) for each of the issue's goals."""
    scenarios = _by_name(results)
    deadline_s = results["settings"]["deadline_ms"] / 1000
    out = []
    target = scenarios.get(SUSTAINED_GOAL_SCENARIO)
    if target:
        got = target["sustained_rps"]
        out.append(
            (
                f"{SUSTAINED_GOAL_SCENARIO} sustains at least {SUSTAINED_GOAL_RPS:,} requests/s",
                got >= SUSTAINED_GOAL_RPS,
                f"{got:,} requests/s sustained (capacity {target['capacity_rps']:,.0f}/s)"
                + ("" if got >= SUSTAINED_GOAL_RPS else f": {1 - got / SUSTAINED_GOAL_RPS:.0%} short"),
            )
        )
        step = _step(target, 1000)
        if step:
            reasons = step["latency_by_reason_s"] or {"preferred": step["latency_s"]}
            preferred = reasons.get("preferred", {}).get("p99")
            out.append(
                (
                    f"p99 at 1,000/s when the preferred model answers in time <= {PREFERRED_P99_GOAL_S} s",
                    preferred is not None and preferred <= PREFERRED_P99_GOAL_S,
                    f"{_num(preferred)} s"
                    + (
                        f": {preferred - PREFERRED_P99_GOAL_S:.2f} s over"
                        if preferred and preferred > PREFERRED_P99_GOAL_S
                        else ""
                    ),
                )
            )
            late = [v["p99"] for r, v in reasons.items() if r != "preferred" and v["p99"] is not None]
            out.append(
                (
                    f"p99 at 1,000/s of fallbacks <= the deadline + 1 s ({deadline_s + 1:g} s)",
                    max(late) <= deadline_s + 1 if late else None,
                    f"{_num(max(late))} s" if late else "no fallback at this load",
                )
            )
    for rate in results["settings"]["fixed_loads"]:
        m = marginal_costs(results, rate)
        ladder = [f"rendezvous-1+{k}" for k in (1, 2, 3) if f"rendezvous-1+{k}" in scenarios]
        unsustained = [n for n in ladder if (step := _step(scenarios[n], rate)) is not None and not step["bounded"]]
        if m["challenger_share"] is None and unsustained:
            out.append(
                (
                    f"one more challenger costs at most {MARGINAL_GOAL:.0%} of champion-only's CPU, at {rate:,}/s",
                    False,
                    f"not measurable: {', '.join(unsustained)} did not sustain {rate:,}/s, so their CPU is "
                    "the machine's limit, not their cost",
                )
            )
        if m["challenger_share"] is not None:
            out.append(
                (
                    f"one more challenger costs at most {MARGINAL_GOAL:.0%} of champion-only's CPU, at {rate:,}/s",
                    m["challenger_share"] <= MARGINAL_GOAL,
                    f"{m['challenger_share']:.0%} ({m['challenger_cpu_s_per_1k']} of {m['champion_only_cpu_s_per_1k']} "
                    f"CPU s per 1,000); duplicate pipelines: {_num(100 * m['duplicate_share'], 0) if m['duplicate_share'] is not None else '-'}%",
                )
            )
    return out


def _top_of_ladder(scenario: dict, results: dict) -> bool:
    """Sustained the highest load tried: the figure is a floor, not the limit."""
    return bool(scenario["sustained_rps"]) and scenario["sustained_rps"] >= max(results["settings"]["rates"])


def _scenario_table(results: dict) -> list[str]:
    limit = _by_name(results).get("limit")
    lines = [
        "| scenario | sustained req/s | × limit | capacity req/s | p50 / p95 / p99 s at 1,000/s | p99 × limit "
        "| p99 s at 5,000/s | CPU s per 1,000 at 1,000/s | × limit | CPU s per 1,000 at 5,000/s | peak memory MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["scenarios"]:
        at1, at5 = _step(s, 1000), _step(s, 5000)
        l1, l5 = (_step(limit, 1000), _step(limit, 5000)) if limit else (None, None)
        lat = at1["latency_s"] if at1 else {}
        lines.append(
            f"| {s['scenario']} | {s['sustained_rps']:,}{'+' if _top_of_ladder(s, results) else ''} "
            f"| {_ratio(s['sustained_rps'], limit and limit['sustained_rps'])} "
            f"| {s['capacity_rps']:,.0f} | {_num(lat.get('p50'))} / {_num(lat.get('p95'))} / {_num(lat.get('p99'))} "
            f"| {_ratio(lat.get('p99'), l1 and l1['latency_s']['p99'])} "
            f"| {_num(at5['latency_s']['p99']) if at5 else '-'}{'' if not at5 or at5['bounded'] else ' (not bounded)'} "
            f"| {_num(at1 and at1['cpu_s_per_1k'], 3)} | {_ratio(at1 and at1['cpu_s_per_1k'], l1 and l1['cpu_s_per_1k'])} "
            f"| {_num(at5 and at5['cpu_s_per_1k'], 3)} "
            f"| {max((st['peak_rss_mib'] for st in s['steps']), default=0):,} |"
        )
    return lines


def own_costs(step: dict) -> str:
    """Each model's own CPU s per 1,000 requests in a step (rdv.costs), or '-'."""
    return ", ".join(f"{m} {c['cpu_s_per_1k']}" for m, c in step.get("models", {}).items()) or "-"


def _steps_table(results: dict) -> list[str]:
    lines = [
        "| scenario | offered/s | sent/s | bounded | drain s | p50 / p99 s | CPU cores | CPU s per 1,000 "
        "| broker CPU s per 1,000 | each model's own CPU s per 1,000 | growing lags |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in results["scenarios"]:
        for st in s["steps"]:
            lines.append(
                f"| {s['scenario']} | {st['offered_rps']:,} | {st['sent_rps']:,.0f} | {'yes' if st['bounded'] else 'no'} "
                f"| {_num(st['drain_s'], 1)} | {_num(st['latency_s']['p50'])} / {_num(st['latency_s']['p99'])} "
                f"| {st['cpu_cores']} | {st['cpu_s_per_1k']} | {st['broker_cpu_s_per_1k']} "
                f"| {own_costs(st)} "
                f"| {', '.join(st['growing_lags']) or '-'} |"
            )
        for rate, why in s.get("skipped", {}).items():
            lines.append(f"| {s['scenario']} | {int(rate):,} | not run: {why} |||||||||")
    return lines


def _stages_table(results: dict) -> list[str]:
    """Spark's per-query batch durations in the busiest bounded step of the goal scenario, or its first step."""
    target = _by_name(results).get(SUSTAINED_GOAL_SCENARIO) or (results["scenarios"] or [None])[-1]
    if not target or not target["steps"]:
        return []
    overloaded = [st for st in target["steps"] if not st["bounded"]]
    step = overloaded[0] if overloaded else target["steps"][-1]
    lines = [
        f"Where the time goes: {target['scenario']} at {step['offered_rps']:,}/s "
        f"({'not bounded' if not step['bounded'] else 'bounded'}), from Spark's progress reports.",
        "",
        "| query | batches | batch p50 s | batch p95 s | rows per batch | largest phases (mean ms) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for query, stage in sorted(step["stages"].items(), key=lambda kv: -kv[1]["batch_p50_s"]):
        phases = sorted(stage["mean_phase_ms"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(
            f"| {query} | {stage['batches']} | {stage['batch_p50_s']} | {stage['batch_p95_s']} "
            f"| {stage['rows_per_batch']:,} | {', '.join(f'{k} {v}' for k, v in phases)} |"
        )
    return lines


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Run of {results['date']}: `{results['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}, "
        f"{m['java']}, Spark {m['spark']}, Delta {m['delta']}.",
        "",
        f"Each load sent for {results['settings']['step_seconds']:g} s; overrides of conf/pipeline.yaml: "
        f"{', '.join(results['settings']['overrides']) or 'none'}.",
        "",
        *_scenario_table(results),
        "",
    ]
    lines += ["A `+`: the highest load tried was sustained, so that figure is a floor.", ""]
    lines += (
        ["Goals:", ""]
        + [
            f"- {'met' if met else 'MISSED' if met is False else 'n/a'}: {goal}: {got}"
            for goal, met, got in goals(results)
        ]
        + [""]
    )
    lines += ["Every step:", "", *_steps_table(results), "", *_stages_table(results), ""]
    return "\n".join(lines)


def _plots(results: dict, out: Path, name: str) -> list[Path]:
    scenarios = results["scenarios"]
    names = [s["scenario"] for s in scenarios]

    figure = Figure(figsize=(8, 4))
    axes = figure.subplots()
    axes.bar(names, [s["capacity_rps"] for s in scenarios], color="#cfd8e3", label="capacity (saturated)")
    axes.bar(names, [s["sustained_rps"] for s in scenarios], color="#3b6ea8", width=0.5, label="sustained")
    axes.axhline(
        SUSTAINED_GOAL_RPS, color="#c0392b", linestyle="--", linewidth=1, label=f"goal ({SUSTAINED_GOAL_RPS:,}/s)"
    )
    axes.set_ylabel("requests/s")
    axes.set_title("Throughput per scenario")
    axes.tick_params(axis="x", labelrotation=20)
    axes.legend(fontsize=8)

    figure2 = Figure(figsize=(8, 4))
    axes = figure2.subplots()
    for s in scenarios:
        steps = [st for st in s["steps"] if st["latency_s"]["p99"] is not None]
        axes.plot(
            [st["offered_rps"] for st in steps],
            [st["latency_s"]["p99"] for st in steps],
            marker="o",
            label=s["scenario"],
        )
    axes.set_yscale("log")
    axes.set_xlabel("offered requests/s")
    axes.set_ylabel("p99 event to result, s")
    axes.set_title("Latency under load")
    axes.legend(fontsize=8)

    figure3 = Figure(figsize=(8, 4))
    axes = figure3.subplots()
    loads = results["settings"]["fixed_loads"]
    width = 0.8 / len(loads)
    for i, rate in enumerate(loads):
        axes.bar(
            [x + i * width for x in range(len(names))],
            [(_step(s, rate) or {}).get("cpu_s_per_1k", 0) for s in scenarios],
            width,
            label=f"at {rate:,}/s",
        )
    axes.set_xticks([x + width * (len(loads) - 1) / 2 for x in range(len(names))], names, rotation=20)
    axes.set_ylabel("CPU s per 1,000 requests")
    axes.set_title("Cost per request")
    axes.legend(fontsize=8)
    paths = []
    for figure_, suffix in ((figure, "throughput"), (figure2, "latency"), (figure3, "cpu")):
        figure_.tight_layout()
        paths.append(out / f"{name}-{suffix}.png")
        figure_.savefig(paths[-1], dpi=90)
    return paths


def write_report(results: dict, out: Path, name: str) -> str:
    """<name>.md and <name>-*.png under out; returns the markdown."""
    text = markdown(results)
    plots = _plots(results, out, name)
    text += "\n" + "\n".join(f"![{p.stem}](results/{p.name})" for p in plots) + "\n"
    (out / f"{name}.md").write_text(text.replace("](results/", "]("))
    return text


def update_readme(readme: Path, report: str, results: dict) -> None:
    """Replace the table between the README's `latest` markers."""
    text = readme.read_text()
    if not LATEST.search(text):
        raise SystemExit(f"{readme}: no <!-- latest --> ... <!-- /latest --> markers to put the results between")
    readme.write_text(LATEST.sub(lambda m: m.group(1) + report + m.group(2), text))


def summary_lines(results: dict) -> list[str]:
    lines = []
    for s in results["scenarios"]:
        step = _step(s, 1000)
        p99 = f"{step['latency_s']['p99']:.2f} s" if step and step["latency_s"]["p99"] is not None else "n/a"
        line = f"{s['scenario']}: {s['sustained_rps']} requests/s sustained, p99 {p99} at 1000 requests/s"
        models = (step or {}).get("models", {})
        challengers = [c["cpu_s_per_1k"] for m, c in models.items() if m.startswith("challenger")]
        if challengers and "champion" in models:
            line += (
                f"; a challenger's own CPU {sum(challengers) / len(challengers):.2f} s per 1,000 requests"
                f" (the champion's {models['champion']['cpu_s_per_1k']:.2f})"
            )
        lines.append(line)
    return lines

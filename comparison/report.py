"""`rdv report`: the comparison tables as one self-contained HTML file, and a summary for the terminal.

The report reads what `rdv compare` wrote (comparison, comparison_tests, comparison_agreement,
drift) and a sample of the scores for the latency distributions. Plots are PNGs embedded in the
page, so the file can be mailed or attached to a ticket and opened anywhere, offline. They are
matplotlib Figures made without pyplot, so the notebook can show the same ones inline.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from delta.tables import DeltaTable
from matplotlib.figure import Figure
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from comparison.promotion import PROMOTION_ROW
from comparison.promotion import TABLE as PROMOTIONS
from comparison.tables import model_rows
from rdv.config import ConfigError, PipelineConfig

LATENCY_SAMPLE = 50_000  # latencies per plot, at most
PROMOTIONS_SHOWN = 5  # the latest changes of champion in the summary; the page has them all


@dataclass(frozen=True)
class Tables:
    """What `rdv compare` wrote, as pandas frames."""

    comparison: pd.DataFrame
    tests: pd.DataFrame
    agreement: pd.DataFrame
    drift: pd.DataFrame
    promotions: pd.DataFrame  # every change of champion on record, oldest first; empty when none


def read_tables(spark: SparkSession, config: PipelineConfig) -> Tables:
    frames = {}
    for name in ("comparison", "comparison_tests", "comparison_agreement", "drift"):
        path = config.table(name)
        if not DeltaTable.isDeltaTable(spark, path):
            raise ConfigError(f"{path}: no comparison tables yet: run `rdv compare` first")
        frames[name] = spark.read.format("delta").load(path).toPandas()
    path = config.table(PROMOTIONS)
    promotions = (
        spark.read.format("delta").load(path).orderBy("at").toPandas()
        if DeltaTable.isDeltaTable(spark, path)
        else pd.DataFrame(columns=PROMOTION_ROW.fieldNames())
    )
    return Tables(
        frames["comparison"], frames["comparison_tests"], frames["comparison_agreement"], frames["drift"], promotions
    )


def _signed(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.4f}"


def _plain(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f}"


def _cost(test) -> str:
    """What the challenger costs beside the champion, when both were sampled (comparison/costs.py)."""
    champion, challenger = test.champion_cpu_s_per_1000, test.challenger_cpu_s_per_1000
    if pd.isna(champion) or pd.isna(challenger):
        return ""
    return f"; CPU per 1,000 requests {challenger:.2f} s against the champion's {champion:.2f} s"


def summary(tables: Tables, config: PipelineConfig) -> str:
    """A few lines: the data compared, the verdict on each challenger with its evidence, the drift flags."""
    comparison, metric = tables.comparison, config.compare.decisive_metric
    served = comparison[comparison["model"] == "served"]
    lines = [
        f"comparison: {comparison['window_start'].nunique()} windows of {config.compare.window}, "
        f"{int(served['requests'].sum())} requests answered, {int(served['labelled'].sum())} with a label"
    ]
    for t in tables.tests.itertuples():
        mcnemar = (
            ""
            if pd.isna(t.mcnemar_p_value)
            else (
                f", McNemar p={t.mcnemar_p_value:.2g} ({t.mcnemar_challenger_only} requests only it got right, "
                f"{t.mcnemar_champion_only} only the champion)"
            )
        )
        lines.append(
            f"  {t.challenger} vs {t.champion} on {t.metric}: {_signed(t.effect)} "
            f"[{_signed(t.ci_low)}, {_signed(t.ci_high)}] ({t.confidence:.0%} interval), {t.labelled} labelled"
            f"{mcnemar} -> {t.recommendation.upper()}{_cost(t)}"
        )
    if tables.tests.empty:
        lines.append("  no challenger to judge")
    # Windows of a run's first and last seconds hold a few requests: the trend is read on full ones.
    full = comparison[comparison["requests"] >= config.compare.drift.min_rows].sort_values("window_start")
    if not full.empty:
        first, last = full["window_start"].iloc[0], full["window_start"].iloc[-1]
        lines.append(
            f"per model, first and latest window of {config.compare.drift.min_rows}+ requests "
            f"({first:%Y-%m-%d %H:%M:%S} and {last:%H:%M:%S}):"
        )
        for model, rows in full.groupby("model"):
            a, b = rows.iloc[0], rows.iloc[-1]
            lines.append(
                f"  {model:<14} {metric} {_plain(a[metric])} -> {_plain(b[metric])}   in time "
                f"{a['in_time_rate']:6.1%} -> {b['in_time_rate']:6.1%}   p99 "
                f"{a['latency_p99_ms'] / 1000:.1f} s -> {b['latency_p99_ms'] / 1000:.1f} s"
            )
    flagged = tables.drift[tables.drift["flagged"]]
    if flagged.empty:
        lines.append(f"drift: nothing over the PSI threshold {config.compare.drift.threshold:g}")
    else:
        worst = flagged.groupby(["kind", "name"])["psi"].max().sort_values(ascending=False)
        lines.append(
            "drift: flagged " + ", ".join(f"{kind} {name} (PSI up to {psi:.2f})" for (kind, name), psi in worst.items())
        )
    for change in tables.promotions.tail(PROMOTIONS_SHOWN).itertuples():
        lines.append(
            f"champion: {change.at:%Y-%m-%d %H:%M:%S} {change.action} of {change.registered_model} "
            f"{change.from_version} -> {change.to_version} by {change.by}: {change.reason}"
        )
    return "\n".join(lines)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def metric_plot(comparison: pd.DataFrame, metrics: tuple[str, ...]) -> Figure:
    figure = Figure(figsize=(9, 2.6 * len(metrics)))
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        for model, rows in comparison.sort_values("window_start").groupby("model"):
            ax.plot(
                rows["window_start"],
                rows[metric],
                marker="o",
                label=model,
                linestyle="--" if model == "served" else "-",
            )
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("window (event time)")
    return figure


def latency_plot(latencies: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(9, 3.5))
    ax = figure.subplots()
    models = sorted(latencies["model"].unique())
    ax.boxplot(
        [latencies.loc[latencies["model"] == m, "seconds"] for m in models],
        tick_labels=models,
        orientation="horizontal",
    )
    ax.set_xlabel("seconds from the event to the score (served: to the answer on rdv.results)")
    ax.grid(alpha=0.3)
    return figure


def agreement_plot(agreement: pd.DataFrame) -> Figure:
    matrix = agreement.pivot(index="model", columns="other", values="agreement")
    figure = Figure(figsize=(1.2 * len(matrix) + 2, 1.0 * len(matrix) + 1.5))
    ax = figure.subplots()
    image = ax.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    for (i, j), value in pd.DataFrame(matrix.to_numpy()).stack().items():
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    figure.colorbar(image, ax=ax, label="same decision")
    return figure


def drift_plot(drift: pd.DataFrame, threshold: float) -> Figure:
    kinds = sorted(drift["kind"].unique())
    figure = Figure(figsize=(9, 3 * len(kinds)))
    axes = figure.subplots(len(kinds), 1, sharex=True, squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds):
        for name, rows in drift[drift["kind"] == kind].sort_values("window_start").groupby("name"):
            ax.plot(rows["window_start"], rows["psi"], marker="o", label=name)
        ax.axhline(threshold, color="red", linestyle=":", label=f"threshold {threshold:g}")
        ax.set_ylabel(f"PSI ({kind})")
        ax.legend(loc="upper left", fontsize="x-small", ncol=3)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("window (event time)")
    return figure


def _latencies(spark: SparkSession, config: PipelineConfig) -> pd.DataFrame:
    scores = spark.read.format("delta").load(config.table("scores"))
    results = spark.read.format("delta").load(config.table("results"))
    rows = model_rows(scores, results)
    total = rows.count()
    if total > LATENCY_SAMPLE:
        rows = rows.sample(fraction=LATENCY_SAMPLE / total, seed=0)
    return rows.select("model", (F.col("latency_ms") / 1000).alias("seconds")).dropna().toPandas()


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, classes="data")


def render(tables: Tables, latencies: pd.DataFrame, config: PipelineConfig, text: str) -> str:
    """The report's HTML: the summary, the recommendation with its evidence, then the plots and tables."""
    settings = config.compare
    figures = [("How each model did, window by window", metric_plot(tables.comparison, settings.metric_names))]
    if not latencies.empty:
        figures.append(("How fast the scores and the answers came", latency_plot(latencies)))
    if not tables.agreement.empty:
        figures.append(("How often two models decide the same", agreement_plot(tables.agreement)))
    if not tables.drift.empty:
        figures.append(("Drift against the reference window", drift_plot(tables.drift, settings.drift.threshold)))
    evidence = tables.tests.drop(columns=["computed_at"], errors="ignore")
    windows = tables.comparison.drop(columns=["computed_at"], errors="ignore")
    flagged = tables.drift[tables.drift["flagged"]].drop(columns=["computed_at"], errors="ignore")
    sections = [
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{_png(f)}'>"
        for title, f in figures
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rendezvous: champion and challengers</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
pre {{ background: #f5f5f5; padding: 1em; overflow-x: auto; }}
table.data {{ border-collapse: collapse; font-size: 0.8em; margin-bottom: 2em; }}
table.data td, table.data th {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Champion and challengers, on the same requests</h1>
<p>Generated {generated} from the tables under {html.escape(str(config.location(config.paths.tables)))}; windows of
{html.escape(settings.window)}; the recommendation's rule: {html.escape(tables.tests["rule"].iloc[0]) if len(tables.tests) else "n/a"}.</p>
<pre>{html.escape(text)}</pre>
<h2>The evidence, per challenger</h2>{_table(evidence)}
{"".join(sections)}
<h2>Changes of champion</h2>{_table(tables.promotions) if len(tables.promotions) else "<p>None on record.</p>"}
<h2>Drift flags</h2>{_table(flagged) if len(flagged) else "<p>None.</p>"}
<h2>Per window and model</h2>{_table(windows)}
</body></html>
"""


@dataclass(frozen=True)
class Report:
    path: Path
    summary: str


def write_report(spark: SparkSession, config: PipelineConfig, out: Path | None = None) -> Report:
    tables = read_tables(spark, config)
    text = summary(tables, config)
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out = config.path(config.paths.var) / "reports" / f"comparison-{stamp}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(tables, _latencies(spark, config), config, text))
    return Report(out, text)

"""What a demo run produced, read back from the Delta tables and the quarantine topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from rdv.config import PipelineConfig


def run_rows(spark: SparkSession, config: PipelineConfig, table: str, id_prefix: str) -> DataFrame | None:
    """The rows of one demo run in a table, or None while the table does not exist yet."""
    try:
        rows = spark.read.format("delta").load(config.table(table))
    except AnalysisException:
        return None
    return rows.where(F.col("request_id").startswith(id_prefix))


@dataclass
class RunCounts:
    archive: int = 0
    results: int = 0
    answered: int = 0  # distinct requests with a result
    scores: dict[str, int] = field(default_factory=dict)
    labels: int = 0

    def complete(self, events: int, models: list[str], labels: int = 0) -> bool:
        return (
            self.archive >= events
            and self.answered >= events
            and all(self.scores.get(m, 0) >= events for m in models)
            and self.labels >= labels
        )


def count_run(spark: SparkSession, config: PipelineConfig, id_prefix: str) -> RunCounts:
    counts = RunCounts()
    if (archive := run_rows(spark, config, "archive", id_prefix)) is not None:
        counts.archive = archive.count()
    if (results := run_rows(spark, config, "results", id_prefix)) is not None:
        row = results.agg(F.count("*").alias("n"), F.countDistinct("request_id").alias("d")).collect()[0]
        counts.results, counts.answered = row.n, row.d
    if (scores := run_rows(spark, config, "scores", id_prefix)) is not None:
        counts.scores = {r.model: r.n for r in scores.groupBy("model").agg(F.count("*").alias("n")).collect()}
    if (labels := run_rows(spark, config, "labels", id_prefix)) is not None:
        counts.labels = labels.count()
    return counts


def quarantined_since(spark: SparkSession, config: PipelineConfig, since: datetime) -> dict[str, int]:
    """Quarantine messages per reason since a time, read from the topic like any consumer would."""
    messages = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", config.kafka.topics.quarantine.name)
        .option("startingOffsets", "earliest")
        .load()
    )
    reasons = messages.where(F.col("timestamp") >= F.lit(since)).select(
        F.get_json_object(F.col("value").cast("string"), "$.reason").alias("reason")
    )
    return {r.reason: r["count"] for r in reasons.groupBy("reason").count().collect()}


def summarize(
    spark: SparkSession, config: PipelineConfig, id_prefix: str, events: int, models: list[str], started: datetime
) -> tuple[str, bool]:
    """A printable summary of the run and whether every promise held: each request archived,
    answered exactly once, and scored once by every model."""
    counts = count_run(spark, config, id_prefix)
    results = run_rows(spark, config, "results", id_prefix)
    scores = run_rows(spark, config, "scores", id_prefix)
    lines = [
        f"requests sent      {events}",
        f"archived (decoy)   {counts.archive}",
        f"results            {counts.results} ({counts.answered} distinct requests)",
    ]
    ok = counts.archive == events and counts.results == events and counts.answered == events
    if results is not None:
        for row in results.groupBy("reason").count().orderBy("reason").collect():
            lines.append(f"  {row.reason:<16} {row['count']}")
        for row in results.groupBy("model").count().orderBy("model").collect():
            lines.append(f"  answered by {row.model or '(default)':<8} {row['count']}")
        q = results.select(
            F.percentile("latency_ms", [0.5, 0.95, 0.99]).alias("p"),
            F.avg(F.col("sla_met").cast("double")).alias("sla"),
        ).collect()[0]
        if q.p:
            lines.append(
                f"latency event->result  p50 {q.p[0] / 1000:.2f} s  p95 {q.p[1] / 1000:.2f} s  "
                f"p99 {q.p[2] / 1000:.2f} s; {q.sla:.1%} within the deadline"
            )
    if scores is not None:
        per_model = (
            scores.groupBy("model", "model_version", "role")
            .agg(
                F.count("*").alias("n"),
                F.countDistinct("request_id").alias("d"),
                F.avg(F.col("in_time").cast("double")).alias("in_time"),
                F.count("error").alias("errors"),
                F.percentile("latency_ms", 0.5).alias("p50"),
            )
            .orderBy("model")
            .collect()
        )
        for row in per_model:
            lines.append(
                f"scores {row.model} v{row.model_version} ({row.role}): {row.n} rows, {row.d} requests, "
                f"{row.errors} errors, {row.in_time:.1%} in time, p50 {row.p50 / 1000:.2f} s after the event"
            )
            ok = ok and row.n == events and row.d == events
    ok = ok and all(counts.scores.get(m) == events for m in models)
    lines.append(f"labels             {counts.labels}")
    quarantined = quarantined_since(spark, config, started)
    lines.append(
        f"quarantined        {sum(quarantined.values())}"
        + "".join(f"\n  {reason:<16} {n}" for reason, n in sorted(quarantined.items()))
    )
    lines.append("every request answered exactly once, scored by every model and archived: " + ("yes" if ok else "NO"))
    return "\n".join(lines), ok

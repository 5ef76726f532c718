"""Where the rendezvous query's rows go: answers to rdv.results and Delta results, scores to Delta scores.

The Delta writes are idempotent per micro-batch (txnAppId and txnVersion), so a batch that is
retried after a failure is not written twice; the Kafka write is at least once, as Kafka sinks
are, and consumers keep the first answer per request_id.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rdv.config import PipelineConfig
from rdv.streams import to_messages, write_batch_to_topic


def results(answers: DataFrame, decided_at: datetime) -> DataFrame:
    """Answers as result records: the decision time and the latency from event to result."""
    return answers.select(
        "request_id",
        "event_time",
        "model",
        "model_version",
        "role",
        "score",
        "label",
        "reason",
        "scored_at",
        F.lit(decided_at).cast("timestamp").alias("decided_at"),
        (F.unix_millis(F.lit(decided_at).cast("timestamp")) - F.unix_millis("event_time")).alias("latency_ms"),
        "deadline_ms",
    )


def scores(score_rows: DataFrame) -> DataFrame:
    """Score rows as stored: late marks a score that came after the request's deadline."""
    return score_rows.select(
        "request_id",
        "event_time",
        "model",
        "model_version",
        "role",
        "score",
        "label",
        "scored_at",
        (F.unix_millis("scored_at") - F.unix_millis("event_time")).alias("latency_ms"),
        "deadline_ms",
        (~F.col("in_time")).alias("late"),
        F.to_date("event_time").alias("event_date"),
    )


def _append(rows: DataFrame, path: str, app_id: str, batch_id: int, partition_by: str | None = None) -> None:
    writer = (
        rows.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .option("mergeSchema", "true")
    )
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(path)


def answers_sink(config: PipelineConfig) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function of the rendezvous query."""
    results_table, scores_table = config.table("results"), config.table("scores")
    results_topic = config.kafka.topics.results.name

    def write_answers(batch: DataFrame, batch_id: int) -> None:
        # Materialised once for the three writes. persist() would do, but Spark 4.2 cannot map
        # the cached output of this union of branches back to its attributes; a local checkpoint
        # gives the batch a plan of its own.
        batch = batch.localCheckpoint(eager=True)
        try:
            answered = results(batch.where(F.col("reason").isNotNull()), datetime.now(timezone.utc))
            write_batch_to_topic(to_messages(answered), config, results_topic)
            _append(answered, results_table, "rendezvous-results", batch_id)
            _append(scores(batch.where(F.col("reason").isNull())), scores_table, "rendezvous-scores", batch_id,
                    partition_by="event_date")
        finally:
            batch.unpersist()

    return write_answers

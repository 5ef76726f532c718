"""The decoy job: archives every feature record into Delta `archive`, exactly as the models saw it,
and validates what it archived with Great Expectations, off the latency path, into Delta
`data_quality` and one GX result document per validated batch under var/data_quality/.

Usage:
    spark-submit --packages <see README> jobs/decoy.py --conf conf
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from models.archive import archive_rows
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import RECORDING_POOL, for_each_batch, read_topic, txn_app_id
from rdv.tables import create_table, write_table

QUERY, QUALITY_QUERY = "decoy", "data-quality"
QUERIES = (QUERY, QUALITY_QUERY)


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    archive = archive_rows(read_topic(spark, config, config.kafka.topics.features.name), config.spec.features_schema())
    return write_table(archive, config, QUERY, "archive", key=("request_id",), since="event_time", first="offset")


def build_quality(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    """Each new batch of the archive validated against the spec's expectation suite."""
    # Imported here: Great Expectations takes seconds to import, and `rdv` reads QUERIES from this module.
    from features.expectations import DATA_QUALITY_ROW, FeatureValidator, expectation_rows

    validator = FeatureValidator(config.spec)
    table, documents = config.table("data_quality"), config.path(config.paths.var) / "data_quality"
    create_table(spark, table, DATA_QUALITY_ROW, "validated_date")

    def validate_batch(batch: DataFrame, batch_id: int) -> None:
        features = batch.select("features.*").persist()
        try:
            rows = features.count()
            if rows == 0:
                return
            validation = validator.validate(features, rows)
        finally:
            features.unpersist()
        validated_at = datetime.now(UTC)
        document = documents / validated_at.strftime("%Y-%m-%d") / f"batch-{batch_id:08d}.json"
        document.parent.mkdir(parents=True, exist_ok=True)
        document.write_text(json.dumps(validation.document, indent=1, default=str))
        records = [
            (
                batch_id,
                validated_at,
                validation.suite,
                rows,
                validation.success,
                r["expectation"],
                r["column"],
                r["success"],
                r["unexpected_count"],
                r["unexpected_percent"],
                r["exception"],
                str(document),
                validated_at.date(),
            )
            for r in expectation_rows(validation)
        ]
        # Idempotent per micro-batch: a batch run again after a failure is not recorded twice.
        (
            spark.createDataFrame(records, DATA_QUALITY_ROW)
            .write.format("delta")
            .mode("append")
            .option("txnAppId", txn_app_id(spark, QUALITY_QUERY))
            .option("txnVersion", batch_id)
            .save(table)
        )

    # A commit that rewrites files (rdv forget's deletes) has nothing new to validate, and without
    # skipping it the Delta source would fail at it on every start.
    stream = spark.readStream.format("delta").option("skipChangeCommits", "true").load(config.table("archive"))
    return for_each_batch(
        stream, config, QUALITY_QUERY, validate_batch, trigger=config.spark.quality_trigger, pool=RECORDING_POOL
    )


def build_all(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    """The job's queries (QUERIES)."""
    return [build(spark, config), build_quality(spark, config)]


APP = "rdv-decoy"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    return argument_parser("Archive every feature record into Delta `archive` and validate it into `data_quality`.")


def main(argv: list[str] | None = None) -> None:
    run_job(APP, parser(), lambda spark, config, args: build_all(spark, config), argv)


if __name__ == "__main__":
    main()

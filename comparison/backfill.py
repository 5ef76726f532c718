"""`rdv labels load`: labels from a file or a table into Delta `labels`, as the stream would.

For the labels that were known before the stream existed, or that come from a system that exports
files. The rows go through the same checks and the same MERGE as rdv.labels (comparison/labels.py),
so loading a file twice, or a file that overlaps the stream, changes nothing. Rows that cannot be
used go to the Delta table `quarantine` with their reason and the source named in source_topic
(`file:<path>` or `table:<name>`); fix the file and load it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from comparison.labels import LABEL_FIELDS, check_labels, latest_per_request, merge_labels, quarantine_records
from rdv.config import ConfigError, PipelineConfig
from rdv.tables import create_table

FORMATS = ("csv", "json", "parquet", "delta")


@dataclass(frozen=True)
class Loaded:
    rows: int
    inserted: int  # requests that had no label yet
    updated: int  # requests whose label this load replaced with a newer one
    quarantined: dict[str, int]  # per reason


def read_source(spark: SparkSession, source: str, fmt: str | None = None) -> tuple[DataFrame, str]:
    """The rows of a file or directory (CSV with a header, JSON lines, Parquet, a Delta table),
    by its extension unless fmt says otherwise, or of a table by name; and the source's name."""
    path = Path(source)
    if not path.exists():
        if fmt is None and "/" not in source and spark.catalog.tableExists(source):
            return spark.table(source), f"table:{source}"
        raise ConfigError(f"{source}: no such file, directory or table")
    fmt = fmt or (
        "delta" if (path / "_delta_log").is_dir() else path.suffix.lstrip(".").lower().replace("jsonl", "json")
    )
    if fmt not in FORMATS:
        raise ConfigError(f"{source}: cannot tell its format from the name; pass --format ({', '.join(FORMATS)})")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.option("header", "true")
    return reader.load(str(path.resolve())), f"file:{path.resolve()}"


def backfill_labels(spark: SparkSession, config: PipelineConfig, source: str, fmt: str | None = None) -> Loaded:
    rows, name = read_source(spark, source, fmt)
    missing = [c for c in ("request_id", "label") if c not in rows.columns]
    if missing:
        raise ConfigError(
            f"{source}: no column {', '.join(missing)} (a label row is {', '.join(LABEL_FIELDS)}; "
            f"the file has {', '.join(rows.columns) or 'no columns'})"
        )
    present = [c for c in LABEL_FIELDS if c in rows.columns]
    # As label records, so that a row is checked exactly as a message of rdv.labels is (a timestamp
    # column as its text in the session's time zone, which is how it is read back).
    fields = [F.col(c).cast("string").alias(c) if c == "labelled_at" else F.col(c) for c in present]
    records = rows.select(
        F.to_json(F.struct(*fields)).alias("value"),
        F.lit(name).alias("topic"),
        F.lit(None).cast("int").alias("partition"),
        F.monotonically_increasing_id().alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )
    checked = check_labels(records).localCheckpoint()
    quarantined = {
        r.reason: r["count"] for r in checked.where("reason IS NOT NULL").groupBy("reason").count().collect()
    }
    if quarantined:
        bad = quarantine_records(checked).withColumn("quarantine_date", F.to_date("quarantined_at"))
        create_table(spark, config.table("quarantine"), bad.schema, "quarantine_date")
        bad.write.format("delta").mode("append").save(config.table("quarantine"))
    inserted, updated = merge_labels(spark, config.table("labels"), latest_per_request(checked))
    return Loaded(checked.count(), inserted, updated, quarantined)

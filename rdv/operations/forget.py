"""Forgetting a data subject (GDPR's right to erasure): every row of theirs out of every Delta table.

The subject is named by the value of the spec's `subject` field as it arrived (a card number, say).
The archive and the scores carry it as it was written (its keyed hash when the field is
`personal: hash`, computed here under the same RDV_PERSONAL_DATA_KEY); the results and the labels
are found through the request ids of the subject's archived and scored requests; the quarantine
holds raw messages, so a subject's are those whose field has the value, or, for a message that is
not JSON, those that hold it as a JSON string.

A deletion leaves the rows in the files of older table versions until a VACUUM removes those files,
by default once Delta's retention (7 days) has passed; `vacuum` removes them at once, which is safe
only while no job writes the tables. Column statistics in the transaction log never hold these
columns (rdv/tables.UNINDEXED_COLUMNS), so the log keeps nothing of the subject.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from hashlib import sha256

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.personal_key import personal_data_key
from rdv.config import ConfigError, PipelineConfig

# Every Delta table that holds a request's data; a table not created yet is reported as absent.
TABLES = ("archive", "scores", "results", "quarantine", "labels")


@dataclass(frozen=True)
class Forgotten:
    """What `forget` did: rows deleted per table (None: no such table) and whether it vacuumed."""

    deleted: dict[str, int | None]
    request_ids: int
    vacuumed: bool


def subject_value(config: PipelineConfig, subject_id: str) -> str:
    """The subject as the tables hold it: the keyed hash of subject_id when the field is personal."""
    spec = config.spec
    if spec.subject is None:
        raise ConfigError(
            f"{config.feature_spec_file}: no `subject` field is declared, so records carry no "
            "data subject to forget; name the raw field that identifies one (docs/data-quality.md)"
        )
    if spec.raw[spec.subject].personal != "hash":
        return subject_id
    key = personal_data_key(spec, config.feature_spec_file)
    assert key is not None  # personal_data_key raises when a field to hash has no key
    return hmac.new(key, subject_id.encode(), sha256).hexdigest()


def _match(table: str, columns: list[str], raw_field: str | None) -> str | None:
    """The MERGE condition that matches a target row `t` of table to the subject's row `s`."""
    parts = []
    if "subject" in columns:
        parts.append("t.subject = s.subject")
    if "request_id" in columns:
        parts.append("t.request_id = s.request_id")
    if table == "quarantine" and raw_field is not None:
        parts.append(f"get_json_object(t.raw, '$.{raw_field}') = s.raw_value")
        parts.append("(get_json_object(t.raw, '$') IS NULL AND instr(t.raw, s.quoted_value) > 0)")
    return " OR ".join(parts) or None


def _deleted_rows(table: DeltaTable, version_before: int) -> int:
    last = table.history(1).collect()[0]
    if last["version"] == version_before:
        return 0
    return int(last["operationMetrics"].get("numTargetRowsDeleted", 0))


def forget(spark: SparkSession, config: PipelineConfig, subject_id: str, vacuum: bool = False) -> Forgotten:
    """Delete every row of the subject from every table; with vacuum, then remove every file that
    the current versions do not use, so that no older version holds the rows either. Vacuum only
    while no job writes the tables: it would remove the files of a commit in flight."""
    subject = subject_value(config, subject_id)
    tables = {
        name: DeltaTable.forPath(spark, config.table(name))
        for name in TABLES
        if DeltaTable.isDeltaTable(spark, config.table(name))
    }
    # Collected before anything is deleted: the archive and the scores are where the ids are found.
    request_ids = sorted(
        {
            row["request_id"]
            for name in ("archive", "scores")
            if name in tables
            for row in tables[name].toDF().where(F.col("subject") == subject).select("request_id").distinct().collect()
        }
    )
    # The values to match come from a source table, not from literals in a condition: a DELETE's
    # condition is written into the transaction log, and would keep the subject there.
    subject_rows = spark.createDataFrame(
        [(request_id, subject, subject_id, json.dumps(subject_id)) for request_id in request_ids or [None]],
        "request_id string, subject string, raw_value string, quoted_value string",
    )
    deleted: dict[str, int | None] = {name: None for name in TABLES}
    for name, table in tables.items():
        condition = _match(name, table.toDF().columns, config.spec.subject)
        if condition is None:
            deleted[name] = 0
            continue
        before = table.history(1).collect()[0]["version"]
        # Only an unconditional delete, so a row matching several of the subject's rows is fine.
        table.alias("t").merge(subject_rows.alias("s"), condition).whenMatchedDelete().execute()
        deleted[name] = _deleted_rows(table, before)
    if vacuum:
        _vacuum_now(spark, tables.values())
    return Forgotten(deleted=deleted, request_ids=len(request_ids), vacuumed=vacuum)


def _vacuum_now(spark: SparkSession, tables) -> None:
    # Delta refuses a retention under its default (7 days) unless told that no writer is running.
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    # Vacuum lists files with this many tasks; Delta's default (10,000) is sized for big clusters.
    spark.conf.set(
        "spark.sql.sources.parallelPartitionDiscovery.parallelism", str(spark.conf.get("spark.sql.shuffle.partitions"))
    )
    for table in tables:
        table.vacuum(0.0)


def report(forgotten: Forgotten) -> list[str]:
    """The lines `rdv forget` prints."""
    lines = [f"{forgotten.request_ids} requests of this subject found in archive and scores"]
    for name, count in forgotten.deleted.items():
        lines.append(f"{name:<11} {'no table' if count is None else f'{count} rows deleted'}")
    if forgotten.vacuumed:
        lines.append("vacuumed: no older table version holds the rows any more")
    else:
        lines.append(
            "not vacuumed: older table versions hold the rows until a VACUUM after Delta's retention "
            "(7 days by default), or `rdv forget --vacuum` with the jobs stopped"
        )
    lines.append("Kafka topics keep the subject's messages until their retention.ms (docs/data-quality.md)")
    return lines

"""Ground truth: label records from rdv.labels (streaming) or a file or table (backfill), into the
Delta table `labels`, one row per request.

A label often comes days after its request (a fraud is confirmed when the card holder complains).
A label record is JSON: {"request_id": "...", "label": 1, "labelled_at": "2026-11-02T10:00:00Z"};
label is a number (or true/false), the class for a classification or the value for a regression;
labelled_at, when the truth became known, is optional (the message's Kafka timestamp, or the time
of the backfill, stands in for it).

Writes are a Delta MERGE on request_id, so replaying a topic or loading a file twice changes
nothing, and a correction (a different label with a newer labelled_at) replaces the older one. A record
that cannot be used goes to quarantine with its reason, as a raw event does.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from features.checks import first_broken

LABEL_ROW = StructType(
    [
        StructField("request_id", StringType()),
        StructField("label", DoubleType()),
        StructField("labelled_at", TimestampType()),
        StructField("source", StringType()),  # the topic, or the file or table it was loaded from
        StructField("recorded_at", TimestampType()),
    ]
)
LABEL_FIELDS = ("request_id", "label", "labelled_at")
_CORRUPT = "_corrupt"
_AS_TEXT = StructType([StructField(name, StringType()) for name in (*LABEL_FIELDS, _CORRUPT)])


def _label_value(text: Column) -> Column:
    """A label's JSON text as a number: a number, or true/false as 1/0; null otherwise."""
    return (
        F.when(text == "true", F.lit(1.0))
        .when(text == "false", F.lit(0.0))
        .otherwise(F.translate(text, '"', "").try_cast("double"))
    )


def check_labels(messages: DataFrame) -> DataFrame:
    """Kafka-like rows (value, topic, partition, offset, timestamp) as LABEL_ROW's fields plus
    `reason` (null for a usable record, else the first rule broken: not_json, not_object,
    missing:<field>, wrong_type:<field>, not_finite:label) and the source row."""
    value = F.col("value").cast("string")
    parsed = messages.select(
        value.alias("value"),
        "topic",
        "partition",
        "offset",
        "timestamp",
        F.from_json(value, _AS_TEXT, {"columnNameOfCorruptRecord": _CORRUPT}).alias("json"),
    )
    json = F.col("json")
    label = _label_value(json["label"])
    labelled_at = json["labelled_at"].try_cast("timestamp")
    rules = [
        (json.isNull() | (json[_CORRUPT].isNotNull() & F.get_json_object(F.col("value"), "$").isNull()), "not_json"),
        (json[_CORRUPT].isNotNull(), "not_object"),
        (json["request_id"].isNull(), "missing:request_id"),
        (json["label"].isNull(), "missing:label"),
        (label.isNull(), "wrong_type:label"),
        (F.isnan(label) | (F.abs(label) == F.lit(float("inf"))), "not_finite:label"),
        (json["labelled_at"].isNotNull() & labelled_at.isNull(), "wrong_type:labelled_at"),
    ]
    reason = first_broken(rules)
    return parsed.select(
        json["request_id"].alias("request_id"),
        label.alias("label"),
        F.coalesce(labelled_at, F.col("timestamp")).alias("labelled_at"),
        F.col("topic").alias("source"),
        F.current_timestamp().alias("recorded_at"),
        reason.alias("reason"),
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp",
    )


def quarantine_records(checked: DataFrame) -> DataFrame:
    """The unusable records of check_labels as quarantine records (features/quarantine.py)."""
    return checked.where(F.col("reason").isNotNull()).select(
        "reason",
        F.col("value").alias("raw"),
        F.col("topic").alias("source_topic"),
        F.col("partition").cast("int").alias("source_partition"),
        F.col("offset").cast("long").alias("source_offset"),
        F.col("timestamp").alias("source_timestamp"),
        F.current_timestamp().alias("quarantined_at"),
    )


def latest_per_request(checked: DataFrame) -> DataFrame:
    """The usable labels as LABEL_ROW rows, one per request: its latest label, by labelled_at and
    then by its place in the source, so a MERGE has one source row per target row."""
    usable = checked.where(F.col("reason").isNull())
    order = Window.partitionBy("request_id").orderBy(F.desc("labelled_at"), F.desc("partition"), F.desc("offset"))
    return usable.withColumn("_n", F.row_number().over(order)).where(F.col("_n") == 1).select(*LABEL_ROW.fieldNames())


def create_labels_table(spark: SparkSession, path: str) -> None:
    """Not partitioned: labels are read and merged by request_id, never by date."""
    (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(LABEL_ROW)
        .property("delta.dataSkippingStatsColumns", "request_id,label,labelled_at,recorded_at")
        .execute()
    )


def merge_labels(spark: SparkSession, path: str, labels: DataFrame) -> tuple[int, int]:
    """Insert new requests' labels; replace a label only with a newer, different one (a correction:
    the same label again, known later, leaves the first one, with the time it was first known).
    Idempotent. Returns how many labels were inserted and how many replaced."""
    create_labels_table(spark, path)
    if labels.isEmpty():
        return 0, 0
    metrics = (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(labels.alias("s"), "t.request_id = s.request_id")
        .whenMatchedUpdateAll(condition="s.labelled_at > t.labelled_at AND s.label <> t.label")
        .whenNotMatchedInsertAll()
        .execute()
        .collect()[0]
    )
    return int(metrics["num_inserted_rows"]), int(metrics["num_updated_rows"])

"""Raw events to canonical feature records, or to quarantine with the reason: pure DataFrame logic.

Every raw record leaves as exactly one of the two, so nothing is lost: the reason of a bad one
is the first rule it breaks, in the order not_json, not_object, missing:<field>,
wrong_type:<field>, bad_policy[:<field>] (see features/policy.py).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from features.policy import override_problems, parse_overrides, request_policy
from features.spec import FEATURE_RECORD, FEATURES, RAW_FIELDS
from rdv.policy import Policy

_CORRUPT = "_corrupt_record"
_RAW_AS_TEXT = StructType(
    [StructField(f.name, StringType()) for f in RAW_FIELDS]
    + [StructField("policy", StringType()), StructField(_CORRUPT, StringType())]
)


def _first_broken_rule(json: Column, policy_problems: list[tuple[Column, Column | str]]) -> Column:
    """The quarantine reason of each record, or null when it is a good event."""
    rules: list[tuple[Column, str]] = [
        (F.get_json_object("value", "$").isNull(), "not_json"),
        (json[_CORRUPT].isNotNull(), "not_object"),
    ]
    rules += [(json[f.name].isNull(), f"missing:{f.name}") for f in RAW_FIELDS if f.required]
    rules += [
        (json[f.name].isNotNull() & F.col(f"typed.{f.name}").isNull(), f"wrong_type:{f.name}")
        for f in RAW_FIELDS
    ]
    rules += policy_problems
    reason = F.when(rules[0][0], F.lit(rules[0][1]))
    for condition, name in rules[1:]:
        reason = reason.when(condition, F.lit(name) if isinstance(name, str) else name)
    return reason


def parse_raw(raw: DataFrame, policy: Policy, max_deadline_ms: int) -> DataFrame:
    """Parse Kafka raw events (value, topic, partition, offset) into typed requests with a reason.

    Returns one row per input row: request_id, event_time, features, policy and reason (null for
    a good event), plus value and the source coordinates for the quarantine.
    """
    json = F.col("json")
    typed = F.struct(*[F.expr(f"try_cast(json.`{f.name}` AS {f.sql_type})").alias(f.name) for f in RAW_FIELDS])
    parsed = (
        raw.withColumn("value", F.col("value").cast("string"))
        .withColumn("json", F.from_json("value", _RAW_AS_TEXT, {"columnNameOfCorruptRecord": _CORRUPT}))
        .withColumn("typed", typed)
        .withColumn("overrides", parse_overrides(json["policy"]))
        .select("*", "typed.*")
    )
    # A request without an id gets one derived from its place in rdv.raw, so a replay of the
    # same raw record yields the same request.
    generated_id = F.concat_ws("-", F.lit("rq"), F.col("partition"), F.col("offset"))
    features = F.struct(*[F.expr(expression).cast("double").alias(name) for name, expression in FEATURES.items()])
    # Rules test the typed raw fields and the features: both are columns before the policy is resolved.
    requests = parsed.select(
        F.coalesce(F.col("typed.request_id"), generated_id).alias("request_id"),
        F.col("typed.event_time").alias("event_time"),
        features.alias("features"),
        "typed", "overrides", "json", "value", "topic", "partition", "offset",
    )
    return requests.select(
        "request_id",
        "event_time",
        "features",
        request_policy(policy, max_deadline_ms, F.col("overrides"), F.col("request_id")).alias("policy"),
        _first_broken_rule(json, override_problems(json["policy"], F.col("overrides"), policy)).alias("reason"),
        "value",
        "topic",
        "partition",
        "offset",
    )



def _feature_record(schema_version: int) -> Column:
    return F.struct(
        F.lit(schema_version).alias("schema_version"),
        F.lit("request").alias("kind"),
        "request_id",
        "event_time",
        "features",
        "policy",
    )


def _quarantine_record() -> Column:
    return F.struct(
        "reason",
        F.col("value").alias("raw"),
        F.col("topic").alias("source_topic"),
        F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"),
        F.current_timestamp().alias("quarantined_at"),
    )


def _heartbeat_record(schema_version: int) -> Column:
    return F.struct(F.lit(schema_version).alias("schema_version"), F.lit("heartbeat").alias("kind"), "event_time")


def route(requests: DataFrame, features_topic: str, quarantine_topic: str, schema_version: int,
          heartbeats_topic: str) -> DataFrame:
    """Kafka messages (topic, key, value): a feature record for a good event, else a quarantine
    record; a heartbeat read from heartbeats_topic becomes a heartbeat record on rdv.features.

    One projection, so a single streaming query writes both topics in one pass over rdv.raw.
    """
    heartbeat = F.col("topic") == heartbeats_topic
    good = F.col("reason").isNull()
    return requests.select(
        F.when(heartbeat | good, F.lit(features_topic)).otherwise(F.lit(quarantine_topic)).alias("topic"),
        F.when(~heartbeat, F.col("request_id")).alias("key"),
        F.when(heartbeat, F.to_json(_heartbeat_record(schema_version)))
        .when(good, F.to_json(_feature_record(schema_version)))
        .otherwise(F.to_json(_quarantine_record()))
        .alias("value"),
    )



def parse_feature_records(messages: DataFrame) -> DataFrame:
    """rdv.features messages (a value column) as typed records, heartbeats included."""
    return messages.select(F.from_json(F.col("value").cast("string"), FEATURE_RECORD).alias("r")).select("r.*")

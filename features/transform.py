"""Raw events to canonical feature records, or to quarantine with the reason: pure DataFrame logic.

Every raw record leaves as exactly one of the two, so nothing is lost. A bad record's reason is the
first rule it breaks, in this order (docs/data-quality.md): too_large, not_json, not_object,
unknown_version:schema_version, missing:<field>, wrong_type:<field>, the spec's checks
(null, not_finite, below_min, above_max, not_allowed, no_match, each :<field>), too_new:event_time,
too_old:event_time, duplicate:request_id, bad_policy[:<field>].

Three steps, each where it can run: `check_raw` applies the spec (stateless, in the streaming
plan); `with_arrival_marks` finds the first arrival of each request id (stateful, in the streaming
plan); `flag_duplicates` and `with_policy` run on each micro-batch, the latter with the policy
file as it is then (the job builds its columns once per policy version, `policy_columns`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from features.checks import check_rules, first_broken
from features.personal import protected
from features.policy_columns import override_problems, parse_overrides, request_policy
from rdv.clock import wall_clock
from rdv.feature_spec import INTERNAL_PREFIX, FeatureSpec
from rdv.policy import Policy

_JSON, _TYPED, _VISIBLE, _FEATURES, _SOURCE, _FITS, _CORRUPT = (
    f"{INTERNAL_PREFIX}{n}" for n in ("json", "typed", "visible", "features", "source", "fits", "corrupt")
)
DUPLICATE = "duplicate:request_id"
# What check_raw gives for each raw record.
CHECKED = (
    "request_id",
    "own_id",
    "subject",
    "event_time",
    "typed",
    "features",
    "policy_text",
    "reason",
    "value",
    "topic",
    "partition",
    "offset",
    "timestamp",
)


def _as_text(spec: FeatureSpec) -> StructType:
    """The raw event with every field read as its JSON text, so that a wrong type is a reason and
    not a silent null (Spark keeps a non-string value's text in a string field)."""
    names = [*spec.raw, "schema_version", "policy"]
    return StructType([StructField(name, StringType()) for name in names] + [StructField(_CORRUPT, StringType())])


def _typed(text: Column, sql_type: str) -> Column:
    """A raw field's JSON text as its declared type, or null when it is not of that type. Spark's
    JSON reader gives the bare tokens NaN and Infinity a string's quotes in a text field: they are
    unquoted for a double, so that they are read as what they are (and refused as not finite)."""
    if sql_type == "double":
        bare = text.isin('"NaN"', '"Infinity"', '"+Infinity"', '"-Infinity"')
        text = F.when(bare, F.translate(text, '"', "")).otherwise(text)
    return text.try_cast(sql_type)


def _rules(spec: FeatureSpec) -> list[tuple[Column, str]]:
    """(broken, reason) for every rule of the spec, in the order they are checked."""
    json, typed, fits = F.col(_JSON), F.col(_TYPED), F.col(_FITS)
    parsed_text = F.when(fits, F.col(_SOURCE)["value"])
    version = json["schema_version"]
    rules: list[tuple[Column, str]] = [
        (~fits, "too_large"),
        # Spark's JSON reader takes NaN and Infinity, which strict JSON does not: such a record is an
        # object with a value that is not finite, not a record that is not JSON.
        (json.isNull() | (json[_CORRUPT].isNotNull() & F.get_json_object(parsed_text, "$").isNull()), "not_json"),
        (json[_CORRUPT].isNotNull(), "not_object"),
        (
            version.isNotNull() & ~F.coalesce(version.try_cast("int").isin(*spec.versions), F.lit(False)),
            "unknown_version:schema_version",
        ),
    ]
    rules += [(json[name].isNull(), f"missing:{name}") for name, field in spec.raw.items() if field.required]
    rules += [(json[name].isNotNull() & typed[name].isNull(), f"wrong_type:{name}") for name in spec.raw]
    rules += check_rules(spec, raw=_TYPED, features=_FEATURES)
    # How far event_time is ahead of the record's arrival on rdv.raw (its Kafka timestamp).
    lead_ms = F.unix_millis(typed["event_time"]) - F.unix_millis(F.col(_SOURCE)["timestamp"])
    rules += [
        (lead_ms > spec.limits.max_future_ms, "too_new:event_time"),
        (-lead_ms > spec.limits.max_lateness_ms, "too_old:event_time"),
    ]
    return rules


def check_raw(raw: DataFrame, spec: FeatureSpec, key: bytes | None = None) -> DataFrame:
    """Kafka rows of rdv.raw (value, topic, partition, offset, timestamp) as checked records
    (CHECKED): the typed raw fields, the features, and the first rule broken as the reason (null
    for a good event).

    Checks see the raw values; the features and the `typed` column given out see personal fields
    hashed under `key` or dropped (features/personal.py), so no personal value reaches a feature.
    """
    value = F.col("value").cast("string")
    fits = F.octet_length(value) <= spec.limits.max_bytes
    # An oversized message is not parsed at all: its cost is its size.
    parsed_text = F.when(fits, value)
    parsed = raw.select(
        F.struct(value.alias("value"), "topic", "partition", "offset", "timestamp").alias(_SOURCE),
        fits.alias(_FITS),
        F.from_json(parsed_text, _as_text(spec), {"columnNameOfCorruptRecord": _CORRUPT}).alias(_JSON),
    )
    typed = F.struct(*[_typed(F.col(_JSON)[name], field.type).alias(name) for name, field in spec.raw.items()])
    visible = protected(F.col(_TYPED), spec, key)
    # The raw fields at the top level, where the feature expressions name them.
    with_fields = (
        parsed.select("*", typed.alias(_TYPED)).select("*", visible.alias(_VISIBLE)).select("*", f"{_VISIBLE}.*")
    )
    features = F.struct(*[F.expr(f.expr).cast(f.type).alias(name) for name, f in spec.features.items()])
    computed = with_fields.select(_SOURCE, _FITS, _JSON, _TYPED, _VISIBLE, features.alias(_FEATURES))
    source = F.col(_SOURCE)
    reason = first_broken(_rules(spec))
    # A request without an id gets one from its place in rdv.raw, so a replay of the same raw record
    # yields the same request; it has no id of its own to be a duplicate of.
    own_id = F.col(_VISIBLE)["request_id"] if "request_id" in spec.raw else F.lit(None).cast("string")
    generated_id = F.concat_ws("-", F.lit("rq"), source["partition"], source["offset"])
    return computed.select(
        F.coalesce(own_id, generated_id).alias("request_id"),
        own_id.isNotNull().alias("own_id"),
        (F.col(_VISIBLE)[spec.subject] if spec.subject else F.lit(None).cast("string")).alias("subject"),
        F.col(_VISIBLE)["event_time"].alias("event_time"),
        F.col(_VISIBLE).alias("typed"),
        F.col(_FEATURES).alias("features"),
        F.col(_JSON)["policy"].alias("policy_text"),
        reason.alias("reason"),
        source["value"].alias("value"),
        source["topic"].alias("topic"),
        source["partition"].alias("partition"),
        source["offset"].alias("offset"),
        source["timestamp"].alias("timestamp"),
    )


def _dedup_candidate(checked_row: Column) -> Column:
    """A good request with an id of its own: only these take part in deduplication, so a bad record
    fixed and replayed is not a duplicate of itself."""
    return checked_row["reason"].isNull() & checked_row["own_id"]


def with_arrival_marks(checked: DataFrame, dedup_window_ms: int | None) -> DataFrame:
    """The features job's stream: every checked record as (request_id, first_arrival null, row),
    plus a mark (request_id, first_arrival true, row null) for each good request whose id was not
    seen in the dedup window; flag_duplicates reads the two together. Without a window, the
    checked records as they are.

    A stateful deduplication over the ids, on processing time: a record's mark arrives in the same
    micro-batch as the record, and no record is ever too late for it. State for an id expires when
    the watermark, which trails the clock by half the window, passes its first arrival by another
    half. The two branches share one shuffle (both read `keyed`), so a micro-batch reads rdv.raw
    and parses it once; the filter of the marked branch is fenced, as in rendezvous/selection.py,
    so that the optimizer does not push it below the shuffle and make the branches differ.
    """
    if dedup_window_ms is None:
        return checked
    keyed = checked.select("request_id", F.struct(*CHECKED).alias("row")).repartition("request_id")
    # Read through the fence, `row` is used whole in this branch too: no field of it is pruned below
    # the shuffle in one branch only.
    fenced = F.when(F.spark_partition_id() >= 0, F.col("row"))
    firsts = (
        keyed.select("request_id", fenced.alias("fenced"))
        .where(_dedup_candidate(F.col("fenced")))
        .select(
            "request_id",
            F.struct("fenced.topic", "fenced.partition", "fenced.offset").alias("place"),
            wall_clock().alias("arrived_at"),
        )
        .withWatermark("arrived_at", f"{dedup_window_ms // 2} milliseconds")
        .dropDuplicatesWithinWatermark(["request_id"])
    )
    marks = firsts.select(
        "request_id",
        "place",
        F.lit(True).alias("first_arrival"),
        F.lit(None).cast(keyed.schema["row"].dataType).alias("row"),
    )
    rows = keyed.select(
        "request_id",
        F.struct("row.topic", "row.partition", "row.offset").alias("place"),
        F.lit(None).cast("boolean").alias("first_arrival"),
        "row",
    )
    return rows.unionByName(marks)


def flag_duplicates(batch: DataFrame, dedup_window_ms: int | None) -> DataFrame:
    """A micro-batch of with_arrival_marks as checked records, a good request without its first
    arrival mark given the reason duplicate:request_id."""
    if dedup_window_ms is None:
        return batch
    first = F.max("first_arrival").over(Window.partitionBy("request_id", "place"))
    rows = batch.select("row", first.alias("first")).where(F.col("row").isNotNull())
    duplicate = _dedup_candidate(F.col("row")) & F.col("first").isNull()
    reason = F.when(duplicate, F.lit(DUPLICATE)).otherwise(F.col("row.reason"))
    # One projection: each DataFrame step of a micro-batch analyses the whole incremental plan again.
    return rows.select(*[reason.alias(c) if c == "reason" else F.col(f"row.{c}").alias(c) for c in CHECKED])


def policy_columns(policy: Policy, spec: FeatureSpec, max_deadline_ms: int) -> list[Column]:
    """with_policy's projection, to build once per policy version: a micro-batch that builds its
    columns from Python pays a py4j round trip, and JVM class lookups, for each function."""
    overrides = parse_overrides(F.col("policy_text"))
    problems = first_broken(override_problems(F.col("policy_text"), overrides, policy))
    resolved = request_policy(policy, set(spec.raw), max_deadline_ms, overrides, F.col("request_id"))
    return [
        *[F.col(c) for c in CHECKED if c != "reason"],
        resolved.alias("policy"),
        F.coalesce(F.col("reason"), problems).alias("reason"),
    ]


def with_policy(checked: DataFrame, policy: Policy, spec: FeatureSpec, max_deadline_ms: int) -> DataFrame:
    """Checked records with each request's policy (features/records.POLICY_STRUCT) resolved from the
    policy in force and the event's own overrides; an unusable override is the reason bad_policy."""
    return checked.select(*policy_columns(policy, spec, max_deadline_ms))


def _feature_record(schema_version: int) -> Column:
    return F.struct(
        F.lit(schema_version).alias("schema_version"),
        F.lit("request").alias("kind"),
        "request_id",
        "subject",
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
        F.col("timestamp").alias("source_timestamp"),
        wall_clock().alias("quarantined_at"),
    )


def route_columns(features_topic: str, quarantine_topic: str, schema_version: int) -> list[Column]:
    """route's projection, to build once per job."""
    good = F.col("reason").isNull()
    return [
        F.when(good, F.lit(features_topic)).otherwise(F.lit(quarantine_topic)).alias("topic"),
        F.col("request_id").alias("key"),
        F.when(good, F.to_json(_feature_record(schema_version)))
        .otherwise(F.to_json(_quarantine_record()))
        .alias("value"),
    ]


def route(requests: DataFrame, features_topic: str, quarantine_topic: str, schema_version: int) -> DataFrame:
    """Kafka messages (topic, key, value): a feature record for a good event, a quarantine record
    for a bad one, each keyed by the request id.

    One projection, so a single streaming query writes both topics in one pass over rdv.raw.
    """
    return requests.select(*route_columns(features_topic, quarantine_topic, schema_version))

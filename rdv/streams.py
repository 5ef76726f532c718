"""Kafka sources and sinks and Delta sinks of the jobs, configured in one place from the pipeline config."""
from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery
from pyspark.sql.types import DateType, NumericType, StringType, StructType, TimestampNTZType, TimestampType

from rdv.config import PipelineConfig
from rdv.kafka_security import spark_options

# Spark fair scheduler pools (rdv/scheduler-pools.xml): the latency path's jobs take the cores
# first; the queries that only record into Delta take what is left.
LATENCY_POOL, RECORDING_POOL = "latency", "recording"


def _start(writer: DataStreamWriter, spark: SparkSession, pool: str, path: str | None = None) -> StreamingQuery:
    """Start a query in a scheduler pool: a query's thread keeps the local properties of the
    thread that started it, foreachBatch's jobs included, so the property is set only for start."""
    context = spark.sparkContext
    context.setLocalProperty("spark.scheduler.pool", pool)
    try:
        return writer.start(path) if path is not None else writer.start()
    finally:
        context.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]


def _kafka_options(config: PipelineConfig) -> dict[str, str]:
    options = {"kafka.bootstrap.servers": config.kafka.bootstrap_servers, **spark_options(config)}
    options.update({f"kafka.{k}": v for k, v in config.kafka.options.items()})
    return options


def read_topic(spark: SparkSession, config: PipelineConfig, topic: str, max_offsets: int | None = None) -> DataFrame:
    """A topic (or several, comma-separated) as a stream of Kafka rows, from the earliest offset
    on a new checkpoint, so a job started after its producers loses nothing."""
    reader = (
        spark.readStream.format("kafka")
        .options(**_kafka_options(config))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if max_offsets is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


def _producer_options(config: PipelineConfig) -> dict[str, str]:
    options = _kafka_options(config)
    options.update({f"kafka.{k}": v for k, v in config.kafka.producer.items()})
    return options


def to_messages(records: DataFrame, key: str = "request_id") -> DataFrame:
    """Rows as Kafka messages: the key column, and the whole row as a JSON value."""
    return records.select(*message_columns([F.col(c) for c in records.columns], key))


def message_columns(columns: list[Column], key: str = "request_id") -> list[Column]:
    """to_messages' projection from the record's named columns, for a job to build once."""
    return [F.col(key).alias("key"), F.to_json(F.struct(*columns)).alias("value")]


def write_topic(
    messages: DataFrame, config: PipelineConfig, query_name: str, topic: str | None = None, trigger: str | None = None
) -> StreamingQuery:
    """Start a query writing (key, value) messages to a topic, or (topic, key, value) to several."""
    writer = (
        messages.writeStream.format("kafka")
        .options(**_producer_options(config))
        .option("checkpointLocation", config.checkpoint(query_name))
        .queryName(query_name)
        .trigger(processingTime=trigger or config.spark.trigger)
    )
    if topic is not None:
        writer = writer.option("topic", topic)
    return _start(writer, messages.sparkSession, LATENCY_POOL)


def publish(messages: DataFrame, config: PipelineConfig, topic: str | None = None) -> None:
    """Write one micro-batch's (key, value) messages to a topic, or (topic, key, value) messages to
    several, from inside foreachBatch."""
    writer = messages.write.format("kafka").options(**_producer_options(config))
    if topic is not None:
        writer = writer.option("topic", topic)
    writer.save()


def for_each_batch(
    stream: DataFrame, config: PipelineConfig, query_name: str, process, trigger: str | None = None,
    pool: str = LATENCY_POOL,
) -> StreamingQuery:
    """Start a query that hands each micro-batch to process(batch, batch_id) on the driver: for
    work that must decide something per batch, such as which model version scores it."""
    writer = (
        stream.writeStream.foreachBatch(process)
        .option("checkpointLocation", config.checkpoint(query_name))
        .queryName(query_name)
        .trigger(processingTime=trigger or config.spark.trigger)
    )
    return _start(writer, stream.sparkSession, pool)


# Columns that hold personal data or a pseudonym of it: kept out of the column statistics in Delta's
# transaction log, which outlives a row's deletion (docs/data-quality.md, "Forgetting a subject").
UNINDEXED_COLUMNS = ("subject", "message", "raw")
_SKIPPABLE = (NumericType, StringType, DateType, TimestampType, TimestampNTZType)


def create_table(spark: SparkSession, path: str, schema: StructType, partition_by: str) -> None:
    """Create a Delta table for rows of schema unless it exists, with statistics (for data skipping)
    on its top-level columns of the types Delta can skip on (numbers, strings, dates, timestamps),
    never on UNINDEXED_COLUMNS nor on the partition column (Delta refuses it there)."""
    indexed = [f.name for f in schema.fields
               if f.name not in (*UNINDEXED_COLUMNS, partition_by) and isinstance(f.dataType, _SKIPPABLE)]
    (DeltaTable.createIfNotExists(spark).location(path).addColumns(schema).partitionedBy(partition_by)
     .property("delta.dataSkippingStatsColumns", ",".join(indexed)).execute())


def write_table(rows: DataFrame, config: PipelineConfig, query_name: str, table: str, key: tuple[str, ...],
                since: str, first: str, partition_by: str = "event_date") -> StreamingQuery:
    """Start a query recording rows into a Delta table, each key once, on the slower table trigger
    (a Delta commit per batch is the cost, and nobody waits for these rows).

    The topics these tables record are written at least once: a job killed between its Kafka write
    and its checkpoint sends the batch again. So each micro-batch keeps one row per key (the
    smallest `first`) and MERGEs in only the keys the table does not hold yet, looking only at the
    rows whose `since` lies within the batch's range (a re-sent record keeps its `since`, and
    Delta skips the files outside it). A batch run again after a crash inserts nothing twice.
    Rows with a null key part cannot be matched: they are appended, once per micro-batch."""
    spark = rows.sparkSession
    path = config.table(table)
    create_table(spark, path, rows.schema, partition_by)
    keyed = F.lit(True)
    for column in key:
        keyed = keyed & F.col(column).isNotNull()
    match = " AND ".join(f"t.`{c}` = s.`{c}`" for c in key)

    def record(batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            counts = batch.agg(F.count(F.when(keyed, 1)).alias("keyed"), F.count(F.when(~keyed, 1)).alias("unkeyed"),
                               F.min(F.unix_micros(since)).alias("low"), F.max(F.unix_micros(since)).alias("high")).first()
            if counts["keyed"]:
                earliest = Window.partitionBy(*key).orderBy(F.col(first).asc_nulls_last())
                unique = batch.where(keyed).withColumn("_n", F.row_number().over(earliest)).where("_n = 1").drop("_n")
                condition = match
                if counts["low"] is not None:
                    condition += (f" AND t.`{since}` >= timestamp_micros({counts['low']})"
                                  f" AND t.`{since}` <= timestamp_micros({counts['high']})")
                (DeltaTable.forPath(spark, path).alias("t")
                 .merge(unique.alias("s"), condition)
                 .whenNotMatchedInsertAll()
                 # A column added to a record (a new field of the score record, say) is added to the table.
                 .withSchemaEvolution()
                 .execute())
            if counts["unkeyed"]:
                # Idempotent per micro-batch instead: the same batch run again is not appended twice.
                (batch.where(~keyed).write.format("delta").mode("append").option("mergeSchema", "true")
                 .option("txnAppId", f"rdv-{query_name}").option("txnVersion", batch_id).save(path))
        finally:
            batch.unpersist()

    return for_each_batch(rows, config, query_name, record, trigger=config.spark.table_trigger, pool=RECORDING_POOL)

"""Kafka sources and sinks of the jobs and their queries' start, configured in one place from the pipeline config."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from rdv.config import PipelineConfig
from rdv.durations import duration_ms
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


# A latency-path query is polled (`spark.poll`) rather than started on a clock tick, and each of its
# sources holds a micro-batch back (read_topic's `every`), as a Kafka producer holds a batch back
# with linger.ms and batch.size: until `spark.trigger` has passed since its last one, or until
# `spark.trigger_records` requests' records wait. (Kafka's source restarts that timer at any poll
# where it has run out, records or not, so records that come to an idle query wait for its next
# run-out: at most one trigger.) So a hop downstream of another starts soon after it, where on
# aligned clock ticks it waited for its next tick; under a light load a query runs at
# most one micro-batch per trigger, whose fixed cost bounds its CPU; under a heavy one a
# micro-batch starts as soon as it is worth its fixed cost, and a request does not wait out the
# trigger at each hop (bench/README.md, "Size or time").
POLLED = "0 seconds"
# The local property in which Spark keeps a streaming query's id on the query's thread.
_QUERY_ID = "sql.streaming.queryId"


def read_topic(
    spark: SparkSession,
    config: PipelineConfig,
    topic: str,
    max_offsets: int | None = None,
    every: str | None = None,
    records_per_request: int = 1,
) -> DataFrame:
    """A topic (or several, comma-separated) as a stream of Kafka rows, from the earliest offset
    on a new checkpoint, so a job started after its producers loses nothing. With `every`, for a
    query triggered POLLED: a micro-batch when records have come and `every` has passed since the
    last one, or at once when `spark.trigger_records` requests' records wait (Kafka's
    maxTriggerDelay and minOffsetsPerTrigger; records_per_request says how many records of the
    source's topics one request brings). max_offsets bounds a micro-batch's records."""
    reader = (
        spark.readStream.format("kafka")
        .options(**_kafka_options(config))
        .options(**{f"kafka.{k}": v for k, v in config.kafka.consumer.items()})
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if max_offsets is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    if every is not None:
        enough = config.spark.trigger_records * records_per_request
        # Spark refuses a minOffsetsPerTrigger above maxOffsetsPerTrigger.
        enough = min(enough, max_offsets) if max_offsets is not None else enough
        reader = reader.option("minOffsetsPerTrigger", str(enough)).option("maxTriggerDelay", f"{duration_ms(every)}ms")
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
    messages: DataFrame, config: PipelineConfig, query_name: str, topic: str | None = None, trigger: str = POLLED
) -> StreamingQuery:
    """Start a query writing (key, value) messages to a topic, or (topic, key, value) to several;
    on the latency path (POLLED, its sources read with `every`) unless given a trigger."""
    writer = (
        messages.writeStream.format("kafka")
        .options(**_producer_options(config))
        .option("checkpointLocation", config.checkpoint(query_name))
        .queryName(query_name)
        .trigger(processingTime=trigger)
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


def txn_app_id(spark: SparkSession, query_name: str) -> str:
    """The txnAppId of a running query's idempotent Delta appends (its batch id is the txnVersion),
    from inside its foreachBatch: its name and the id Spark keeps in its checkpoint. Restarted on
    its checkpoint, the query keeps it, so a batch run again after a crash is not appended twice.
    Started on a new checkpoint (a reset, docs/operations.md), whose batch ids start at 0 again, it
    gets a new one: under the old one Delta would skip every append until the batch ids passed the
    old ones. The id is a local property of the query's thread, on which foreachBatch's calls into
    Spark run (the batch's session is a clone whose query manager lists no query)."""
    query_id = spark.sparkContext.getLocalProperty(_QUERY_ID)
    if not query_id:
        raise RuntimeError(f"{query_name}: txn_app_id is for a streaming query's foreachBatch, and found no query id")
    return f"rdv-{query_name}-{query_id}"


def for_each_batch(
    stream: DataFrame,
    config: PipelineConfig,
    query_name: str,
    process,
    trigger: str = POLLED,
    pool: str = LATENCY_POOL,
) -> StreamingQuery:
    """Start a query that hands each micro-batch to process(batch, batch_id) on the driver: for
    work that must decide something per batch, such as which model version scores it. On the
    latency path (POLLED, its sources read with `every`) unless given a trigger and a pool."""
    writer = (
        stream.writeStream.foreachBatch(process)
        .option("checkpointLocation", config.checkpoint(query_name))
        .queryName(query_name)
        .trigger(processingTime=trigger)
    )
    return _start(writer, stream.sparkSession, pool)

"""Where the pipeline's queries run in the session: their scheduler pools, the settings for tables
and checkpoints on a local disk, and the driver's log configuration."""

from __future__ import annotations

import time

from kafka import KafkaProducer
from pyspark import TaskContext

from rdv.spark import LOG_CONFIG, local_storage_settings
from rdv.streams import LATENCY_POOL, RECORDING_POOL, for_each_batch, read_topic
from tests.helpers import make_config
from tests.integration.helpers import wait_for


def _pools_of_tasks(batch) -> list[str]:
    return batch.rdd.mapPartitions(lambda _: [TaskContext.get().getLocalProperty("spark.scheduler.pool")]).collect()


def test_each_query_runs_its_jobs_in_its_pool_and_the_latency_pool_goes_first(spark, tmp_path):
    config = make_config(tmp_path)
    seen: dict[str, set[str]] = {"answers": set(), "records": set()}
    stream = spark.readStream.format("rate").option("rowsPerSecond", 5).load()
    queries = [
        for_each_batch(
            stream,
            config,
            "answers",
            lambda b, _: seen["answers"].update(_pools_of_tasks(b)),
            trigger="200 milliseconds",
        ),
        for_each_batch(
            stream,
            config,
            "records",
            lambda b, _: seen["records"].update(_pools_of_tasks(b)),
            trigger="200 milliseconds",
            pool=RECORDING_POOL,
        ),
    ]
    try:
        # The property is set for the start only: jobs of this thread are in no pool.
        assert spark.sparkContext.getLocalProperty("spark.scheduler.pool") is None
        deadline = time.monotonic() + 60
        while not all(seen.values()):
            assert time.monotonic() < deadline, f"no batch with tasks yet: {seen}"
            time.sleep(0.2)
    finally:
        for query in queries:
            query.stop()
    # The jobs foreachBatch starts on the driver are in the pool of the query's own thread.
    assert seen == {"answers": {LATENCY_POOL}, "records": {RECORDING_POOL}}
    pools = spark.sparkContext._jsc.sc()
    latency, recording = pools.getPoolForName(LATENCY_POOL).get(), pools.getPoolForName(RECORDING_POOL).get()
    assert (latency.minShare(), latency.weight(), str(latency.schedulingMode())) == (2, 4, "FAIR")
    assert (recording.minShare(), recording.weight()) == (0, 1)


def _produce_at_once(bootstrap: str, topic: str, count: int) -> None:
    """count records in one record batch, so that a source sees all of them or none: sent one by
    one, a poll could come between them and see fewer than trigger_records."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=60_000)
    for _ in range(count):
        producer.send(topic, value=b"{}")
    producer.flush()
    producer.close()


def test_a_latency_path_source_starts_a_micro_batch_by_size_or_by_time(spark, config):
    """With a trigger of an hour and trigger_records 20: fewer than 20 records wait for the
    trigger, and as many start a micro-batch at once."""
    spark_settings = config.spark.model_copy(update={"trigger": "1 hour", "trigger_records": 20})
    hourly = config.model_copy(update={"spark": spark_settings})
    bootstrap, topic = hourly.kafka.bootstrap_servers, hourly.kafka.topics.raw.name
    _produce_at_once(bootstrap, topic, 25)
    read: list[int] = []
    stream = read_topic(spark, hourly, topic, every=hourly.spark.trigger)
    query = for_each_batch(stream, hourly, "sized", lambda batch, _: read.append(batch.count()))
    try:
        wait_for(lambda: sum(read), lambda n: n == 25, "the records waiting at the start, in one micro-batch")
        _produce_at_once(bootstrap, topic, 10)
        time.sleep(3)  # fifteen of the query's polls (spark.poll)
        assert sum(read) == 25, "fewer records than trigger_records must wait for the trigger"
        _produce_at_once(bootstrap, topic, 15)
        wait_for(lambda: sum(read), lambda n: n == 50, "a micro-batch as soon as trigger_records wait")
        assert read == [25, 25]
    finally:
        query.stop()


def test_local_storage_settings_apply_to_local_checkpoints_only(tmp_path):
    local = local_storage_settings(make_config(tmp_path / "a"))
    assert local["spark.delta.logStore.file.impl"] == "io.delta.storage.LocalLogStore"
    assert local["spark.sql.streaming.checkpointFileManagerClass"].endswith(".FileSystemBasedCheckpointFileManager")
    # Spark's checkpoint file manager is one for every path: checkpoints elsewhere keep Spark's default.
    remote = local_storage_settings(make_config(tmp_path / "b", paths={"checkpoints": "s3a://bucket/checkpoints"}))
    assert "spark.sql.streaming.checkpointFileManagerClass" not in remote
    assert remote["spark.delta.logStore.file.impl"] == local["spark.delta.logStore.file.impl"]


def test_the_local_file_system_is_one_the_state_store_can_upload_snapshots_from(spark):
    """RocksDB's state store copies each snapshot from the local disk with
    FileSystem.copyFromLocalFile, which casts the file: file system to LocalFileSystem: with the
    raw local file system every upload failed (tests/e2e/test_running_pipeline.py shows the
    snapshots of a running pipeline)."""
    jvm = spark._jvm
    local = jvm.org.apache.hadoop.fs.FileSystem.getLocal(spark._jsc.hadoopConfiguration())  # the cast is in here
    assert jvm.java.lang.Class.forName("org.apache.hadoop.fs.LocalFileSystem").isInstance(local)


def test_a_driver_rdv_starts_logs_with_its_configuration_which_drops_warnings_nobody_can_act_on(spark):
    jvm = spark.sparkContext._jvm
    assert jvm.java.lang.System.getProperty("log4j2.configurationFile") == str(LOG_CONFIG)

    def level(logger: str) -> str:
        return str(jvm.org.apache.logging.log4j.LogManager.getLogger(logger).getLevel())

    # Still so after the session's setLogLevel("WARN").
    assert (
        level("org.apache.hadoop.util.NativeCodeLoader"),
        level("org.apache.spark.util.SparkStringUtils"),
        level("org.apache.spark.sql.execution.streaming"),
    ) == ("ERROR", "ERROR", "WARN")

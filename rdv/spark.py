"""The one SparkSession factory, used by the jobs, the CLI and the tests.

Under spark-submit the master, the packages and the memory come from the command line and are
left alone; run from plain Python (the local profile, the tests) the session gets the cached
Kafka and Delta jars from var/jars/spark.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from rdv.config import PipelineConfig
from rdv.durations import duration_ms
from rdv.spark_launch import DRIVER_JAVA_OPTIONS, local_jars

SCHEDULER_POOLS = Path(__file__).resolve().parent / "scheduler-pools.xml"
# The drivers' log configuration: Spark's defaults without the warnings a user cannot act on.
LOG_CONFIG = Path(__file__).resolve().parent / "log4j2.properties"
# RocksDB's count of the rows in a state store (numRowsTotal in the progress reports): each put and
# delete reads the key first to keep it. Off, except where a benchmark watches the state's size.
TRACK_STATE_ROWS = "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows"
# Lines a driver JVM writes to stderr that say nothing a user can act on, dropped by exact text.
# Spark's launcher adds the Vector API's incubator module (for its linear algebra) to every JVM,
# and the JDK warns about any incubator module at start, with no option to turn that off.
JVM_NOISE = frozenset({"WARNING: Using incubator modules: jdk.incubator.vector"})


def local_storage_settings(config: PipelineConfig) -> dict[str, str]:
    """Settings for tables and checkpoints on a local disk (file: paths), where Hadoop's defaults
    cost the most: without Hadoop's native library, its local file system starts a process
    (`readlink`, `chmod`) for each permission it sets and each link it checks, and the FileContext
    API that Spark's checkpoints and Delta's log use checks links on every rename. So checkpoints
    and the Delta log are written through the FileSystem API instead. Both keep their guarantees for
    their one writer: write a temporary file, then rename it unless the target exists.

    The file system itself stays Hadoop's checksummed LocalFileSystem: RocksDB's state store
    uploads its snapshots with FileSystem.copyFromLocalFile, which casts the file: file system to
    LocalFileSystem, and with the raw one (no .crc files, once set here) every upload failed. Then
    no changelog is ever cleaned up and a restart replays each one since the query's start
    (bench/README.md, "Tuning").
    """
    settings = {
        "spark.delta.logStore.file.impl": "io.delta.storage.LocalLogStore",
    }
    # Global in Spark, so only when every checkpoint is on the local disk.
    if urlparse(str(config.paths.checkpoints)).scheme in ("", "file"):
        settings["spark.sql.streaming.checkpointFileManagerClass"] = (
            "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
        )
    return settings


def build_session(config: PipelineConfig, app_name: str) -> SparkSession:
    """A session with Delta, the Kafka connector and the pipeline's Spark settings."""
    # Python workers must run the interpreter that has pandas, pyarrow and mlflow.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if config.spark.master.startswith("local"):
        # A local driver serves its executors and UI on loopback only (and Spark stops warning
        # that the host's name resolves to it).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    builder = SparkSession.builder.appName(app_name)
    # spark-submit starts the Python driver with a gateway to its JVM already configured.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(config.spark.master).config("spark.jars", ",".join(local_jars(config)))
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(config.spark.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Delta replays its log with this many tasks; the default (50) is sized for big clusters.
        "spark.databricks.delta.snapshotPartitions": str(config.spark.shuffle_partitions),
        # Several streaming queries share one application by default: the latency path's jobs go
        # first, the Delta recorders take the rest (rdv/scheduler-pools.xml, rdv/streams.py).
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(SCHEDULER_POOLS),
        "spark.sql.streaming.stateStore.providerClass": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        TRACK_STATE_ROWS: "false",
        "spark.sql.streaming.metricsEnabled": "true",
        # How often a latency-path query without new records looks again (rdv/streams.POLLED).
        "spark.sql.streaming.pollingDelay": f"{duration_ms(config.spark.poll)}ms",
        # Every micro-batch plans its stages again, and the generated classes come from this cache.
        # The default (100 entries) is less than one application of the pipeline's jobs has stages
        # and projections: the cache thrashed and each micro-batch compiled Java again.
        "spark.sql.codegen.cache.maxEntries": "1000",
        "spark.sql.warehouse.dir": str(config.path(config.paths.var) / "spark-warehouse"),
    }
    settings.update(local_storage_settings(config))
    settings.update(config.spark.conf)
    # The user's own options last: a -D given twice takes the last value.
    java_options = (
        f"-Dderby.system.home={config.path(config.paths.var)}",
        f"-Dlog4j2.configurationFile={LOG_CONFIG}",
        config.spark.conf.get(DRIVER_JAVA_OPTIONS),
    )
    settings[DRIVER_JAVA_OPTIONS] = " ".join(o for o in java_options if o)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = _get_or_launch(builder)
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _get_or_launch(builder: SparkSession.Builder) -> SparkSession:
    """getOrCreate; when that launches the driver JVM, the JVM's stderr goes through a pipe that
    drops JVM_NOISE and passes every other line on to this process's stderr, for as long as the
    JVM runs. The JVM inherits stderr when it starts, so fd 2 points at the pipe only meanwhile."""
    if "PYSPARK_GATEWAY_PORT" in os.environ or SparkSession.getActiveSession() is not None:
        return builder.getOrCreate()
    read_end, write_end = os.pipe()
    stderr = os.dup(2)
    threading.Thread(target=_forward, args=(read_end, stderr), name="jvm-stderr", daemon=True).start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        return builder.getOrCreate()
    finally:
        os.dup2(stderr, 2)


def _forward(read_end: int, stderr: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            if line.rstrip(b"\r\n").decode(errors="replace") not in JVM_NOISE:
                os.write(stderr, line)

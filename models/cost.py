"""What a model costs to run: each model job samples the CPU it spent and the requests it scored
onto rdv.costs, which the recorder keeps in the Delta table `costs`, so that `rdv compare` puts each
model's CPU per 1,000 requests beside what it gains (docs/analysis.md, "What a model costs").

How the CPU is measured depends on how the job runs (`measured_by` in each row):

- `processes`, a model job that is an application of its own (`rdv up --separate`, spark-submit):
  the CPU of the application's processes, the driver JVM and every process under it (the Python
  driver, PySpark's daemon and its workers). That is all the job costs, its per-micro-batch fixed
  cost included; executors on other hosts of a cluster are not seen.
- `tasks`, a model query in an application it shares (`rdv up`'s default): the executor CPU time of
  the query's tasks, from Spark's status store by the query's job group, plus the CPU of its pandas
  UDF in the Python workers, which task metrics do not count, from two accumulators. The driver's
  part (planning each micro-batch, its stream thread) is shared and not attributed.

Samples are taken between micro-batches, every `compare.cost_sample` and when the job moves to
another model version, so that each row is of one version. A sample is one small Kafka message from
a thread of its own, so that no micro-batch waits for it and the latency path makes no Delta
commit; the recorder writes it with the scores, each (model, measured_from) once. Idle time costs
no row: its CPU goes with the next sample that scored requests. What is paid once is left out,
since no request causes it: the job's first micro-batch (the query's code generated and compiled,
the model loaded), and in the UDF the loading of each version.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import psutil
from kafka import KafkaProducer
from kafka.errors import KafkaError
from py4j.protocol import Py4JError
from pyspark import Accumulator, SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

from models.registry import ResolvedModel
from rdv.config import PipelineConfig
from rdv.durations import duration_ms
from rdv.kafka_security import client_settings

MeasuredBy = Literal["processes", "tasks"]

COST_ROW = StructType(
    [
        StructField("model", StringType()),
        StructField("registered_model", StringType()),
        StructField("model_version", StringType()),
        StructField("measured_from", TimestampType()),
        StructField("measured_to", TimestampType()),
        StructField("requests", LongType()),
        StructField("cpu_s", DoubleType()),
        StructField("measured_by", StringType()),
    ]
)

log = logging.getLogger("rdv.cost")


@dataclass(frozen=True)
class UdfMeter:
    """Two accumulators a model's scoring UDF adds to at the end of each task: the CPU seconds of its
    Python worker while it scored, and the rows it scored. Made once per model job, so every
    version's UDF counts into them. A task Spark runs again is counted again."""

    cpu_s: Accumulator
    rows: Accumulator

    @classmethod
    def create(cls, context: SparkContext) -> UdfMeter:
        return cls(context.accumulator(0.0), context.accumulator(0))

    def add(self, cpu_s: float, rows: int) -> None:
        """Called in the Python worker."""
        self.cpu_s.add(cpu_s)
        self.rows.add(rows)


def process_tree_cpu_s() -> float:
    """CPU seconds so far of this application's processes: the driver JVM (this Python driver's parent
    under spark-submit, its child when Python started it) and every process under it. Processes that
    ended are counted once their parent reaped them."""
    me = psutil.Process()
    parent = me.parent()
    root = parent if parent is not None and parent.name() == "java" else me
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class TaskCpu:
    """Executor CPU seconds so far of the finished jobs of one job group: a streaming query runs every
    job of its micro-batches, foreachBatch's too, in the group named by its run id. Read from the
    status store over py4j, each job once; the store keeps the last spark.ui.retainedJobs jobs of
    the application, so it is read at every sample, not once an hour."""

    def __init__(self, context: SparkContext) -> None:
        self._context = context
        self._counted: set[int] = set()
        self._total_s = 0.0

    def total_s(self, group: str) -> float:
        store = self._context._jsc.sc().statusStore()
        ids = set(self._context.statusTracker().getJobIdsForGroup(group))
        for job_id in sorted(ids - self._counted):
            job = store.job(job_id)
            if str(job.status()) not in ("SUCCEEDED", "FAILED"):
                continue
            self._counted.add(job_id)
            for stage in filter(None, job.stageIds().mkString(",").split(",")):
                try:
                    self._total_s += store.lastStageAttempt(int(stage)).executorCpuTime() / 1e9
                except Py4JError:  # a stage skipped or no longer kept: it ran no task we can count
                    continue
        self._counted &= ids  # a job the store dropped is never listed again
        return self._total_s


class CostSampler:
    """The sampling of one model job (see the module's docstring). `before_batch`, called by the
    job's foreachBatch before it scores, only notes when a sample is due; the counters are read and
    the sample sent on a thread, one sample at a time, so that no micro-batch waits for the py4j
    calls or the broker."""

    def __init__(
        self, spark: SparkSession, config: PipelineConfig, model: str, measured_by: MeasuredBy, meter: UdfMeter
    ) -> None:
        self._spark, self._config, self._model = spark, config, model
        every_s = duration_ms(config.compare.cost_sample) / 1000
        self._measured_by, self._meter, self._every_s = measured_by, meter, every_s
        self._tasks = TaskCpu(spark.sparkContext) if measured_by == "tasks" else None
        self._group = ""  # the query's job group, its run id, as foreachBatch sees it
        self._batches = 0
        self._serving: ResolvedModel | None = None
        self._due_from = time.time()
        # Read and written under the lock, by one sampling thread at a time.
        self._lock = threading.Lock()
        self._since: float | None = None
        self._cpu_s, self._rows = 0.0, 0
        self._pending: list[dict] = []
        self._producer: KafkaProducer | None = None

    def before_batch(self, serving: ResolvedModel) -> None:
        now, self._batches = time.time(), self._batches + 1
        if self._batches == 1:
            self._group = self._spark.sparkContext.getLocalProperty("spark.jobGroup.id") or ""
        if self._batches <= 2:  # the counters from after the first micro-batch on
            self._serving, self._due_from = serving, now
            if self._batches == 2:
                self._sample_later(now, None, restart=True)
            return
        if serving is self._serving and now - self._due_from < self._every_s:
            return
        self._sample_later(now, self._serving, restart=serving is not self._serving)
        self._serving, self._due_from = serving, now

    def _sample_later(self, at: float, version: ResolvedModel | None, restart: bool) -> None:
        sample = threading.Thread(
            target=self._sample, args=(at, version, restart), name=f"rdv-cost-{self._model}", daemon=True
        )
        sample.start()

    def _cpu_so_far(self) -> float:
        if self._tasks is None:
            return process_tree_cpu_s()
        return self._meter.cpu_s.value + (self._tasks.total_s(self._group) if self._group else 0.0)

    def _sample(self, at: float, version: ResolvedModel | None, restart: bool) -> None:
        """The CPU and rows since the last sample, as a row of `version` (None: only the start);
        with restart (the start, a new version), what comes next is counted from here."""
        with self._lock:
            cpu_s, rows = self._cpu_so_far(), self._meter.rows.value
            if version is not None and self._since is not None and rows > self._rows:
                self._pending.append(
                    {
                        "model": self._model,
                        "registered_model": version.registered_model,
                        "model_version": version.version,
                        "measured_from": _iso(self._since),
                        "measured_to": _iso(at),
                        "requests": rows - self._rows,
                        "cpu_s": max(cpu_s - self._cpu_s, 0.0),
                        "measured_by": self._measured_by,
                    }
                )
            elif not restart:
                return  # nothing scored since the last sample: its CPU goes with the next one
            self._since, self._cpu_s, self._rows = at, cpu_s, rows
            if self._pending:
                self._publish()

    def _publish(self) -> None:
        topic = self._config.kafka.topics.costs.name
        try:
            if self._producer is None:
                self._producer = KafkaProducer(**client_settings(self._config), acks="all")
            for sample in self._pending:
                key = f"{sample['model']}/{sample['measured_from']}".encode()
                self._producer.send(topic, key=key, value=json.dumps(sample).encode())
            self._producer.flush(timeout=30)
            self._pending = []
        except KafkaError as error:  # kept, and sent again with the next sample
            log.warning("costs: %d samples not on %s yet: %s", len(self._pending), topic, error)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cost_rows(messages: DataFrame) -> DataFrame:
    """rdv.costs messages as rows of the table `costs`: COST_ROW, and the date it is partitioned by."""
    parsed = messages.select(F.from_json(F.col("value").cast("string"), COST_ROW).alias("c")).select("c.*")
    return parsed.withColumn("measured_date", F.to_date("measured_from"))

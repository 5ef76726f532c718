"""Benchmark of the rendezvous job alone: how many requests per second it decides with 3 models.

It starts its own broker on 127.0.0.1 (port 19192, stopped at the end), loads `--seconds` of
traffic at `--rate` requests per second into rdv.features and rdv.scores (three scores per
request: a champion that is late for 10% of requests and missing for 2%, two challengers; a
heartbeat per second of event time), then runs the rendezvous query on that backlog, in
micro-batches of `--batch-seconds` of traffic each, as fast as it can, publishing to rdv.results.

Throughput is requests decided per second of processing, after the first micro-batch (which pays
for code generation and the state store's start). At an offered rate R with a trigger of
--batch-seconds, a micro-batch holds that many seconds of traffic; when the throughput is at
least R, each micro-batch is done before the next trigger, so the job keeps up with R: that is
the figure printed as sustained. It is checked too: every request is answered exactly once.

Usage:
    make bench-rendezvous                  # or: python -m bench.rendezvous --rate 5000 --seconds 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.decide import decisions
from rdv.config import PipelineConfig, load_config
from rdv.kafka_security import client_settings
from rdv.operations.kafka_local import LocalBroker, ensure_topics, pipeline_topics
from rdv.spark import TRACK_STATE_ROWS, build_session
from rdv.streams import publish, to_messages, write_topic

ROOT = Path(__file__).resolve().parent.parent
MODELS = (("champion", "champion"), ("gbt", "challenger"), ("forest", "challenger"))
START = datetime(2026, 1, 1, tzinfo=UTC)


def bench_config(work: Path, port: int, spark_conf: dict[str, str]) -> PipelineConfig:
    """The shipped conf with the benchmark's broker, its own paths under work/ and any Spark
    settings under test."""
    conf = work / "conf"
    conf.mkdir(parents=True)
    data = yaml.safe_load((ROOT / "conf" / "pipeline.yaml").read_text())
    data["kafka"]["bootstrap_servers"] = f"127.0.0.1:{port}"
    data["paths"] = {
        "var": str(work / "var"),
        "jars": str(ROOT / "var" / "jars"),
        "tables": str(work / "delta"),
        "checkpoints": str(work / "checkpoints"),
    }
    data["spark"]["trigger"] = "0 seconds"  # back to back: the benchmark measures processing time
    data["spark"]["conf"] = {**data["spark"].get("conf", {}), TRACK_STATE_ROWS: "true", **spark_conf}
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data))
    for name in ("policy.yaml", "features.yaml"):
        shutil.copy(ROOT / "conf" / name, conf / name)
    return load_config(conf)


def _policy(config: PipelineConfig) -> F.Column:
    policy = config.policy
    return F.struct(
        F.lit(policy.strategy).alias("strategy"),
        F.lit(policy.deadline_ms).alias("deadline_ms"),
        F.array(*[F.lit(p) for p in policy.preference]).alias("preference"),
        F.lit(policy.default_score).alias("default_score"),
        F.lit(None).cast("string").alias("criterion"),
        F.lit(None).cast("string").alias("rule"),
        F.lit(None).cast("string").alias("arm"),
    )


def _in_order(messages: DataFrame, order: str) -> DataFrame:
    """One writer task, in event-time order, as live producers would have written them: the
    watermark must not see the end of the backlog before its beginning."""
    return messages.repartition(1).sortWithinPartitions(order).drop(order)


def load_traffic(spark: SparkSession, config: PipelineConfig, rate: int, seconds: int) -> int:
    """Write the backlog; returns the number of requests."""
    total = rate * seconds
    start_ms = int(START.timestamp() * 1000)
    ids = spark.range(total).select(
        F.format_string("bench-%09d", "id").alias("request_id"),
        F.timestamp_millis(F.lit(start_ms) + (F.col("id") * 1000 / rate).cast("long")).alias("event_time"),
        F.pmod(F.xxhash64("id"), F.lit(100)).alias("bucket"),
    )
    deadline_ms = config.policy.deadline_ms
    requests = ids.select(
        "request_id",
        "event_time",
        F.to_json(
            F.struct(
                F.lit(1).alias("schema_version"),
                F.lit("request").alias("kind"),
                "request_id",
                "event_time",
                F.struct(*[F.lit(0.5).alias(name) for name in config.spec.features]).alias("features"),
                _policy(config).alias("policy"),
            )
        ).alias("value"),
    )
    beats = spark.range(seconds + config.timing.watermark_ms // 1000 + 2).select(
        F.lit(None).cast("string").alias("request_id"),
        F.timestamp_millis(F.lit(start_ms) + F.col("id") * 1000).alias("event_time"),
        F.to_json(
            F.struct(
                F.lit(1).alias("schema_version"),
                F.lit("heartbeat").alias("kind"),
                F.timestamp_millis(F.lit(start_ms) + F.col("id") * 1000).alias("event_time"),
            )
        ).alias("value"),
    )
    features = requests.unionByName(beats)
    scores = []
    for model, role in MODELS:
        late = (F.col("bucket") < 10) if role == "champion" else F.lit(False)
        latency_ms = F.when(late, deadline_ms + 500).otherwise(
            50 + F.pmod(F.xxhash64("request_id", F.lit(model)), F.lit(900))
        )
        kept = ids.where(F.col("bucket") < 98) if role == "champion" else ids  # the champion misses 2%
        scored_at = F.timestamp_millis(F.unix_millis("event_time") + latency_ms)
        scores.append(
            kept.select(
                "request_id",
                scored_at.alias("scored_at"),
                F.to_json(
                    F.struct(
                        "request_id",
                        F.lit(model).alias("model"),
                        F.lit("fraud").alias("registered_model"),
                        F.lit("1").alias("model_version"),
                        F.lit(role).alias("role"),
                        (F.pmod(F.xxhash64("request_id", F.lit(model)), F.lit(1000)) / 1000).alias("score"),
                        F.lit(0).alias("label"),
                        F.lit(None).cast("string").alias("error"),
                        scored_at.alias("scored_at"),
                        "event_time",
                        _policy(config).alias("policy"),
                    )
                ).alias("value"),
            )
        )
    all_scores = scores[0].unionByName(scores[1]).unionByName(scores[2])
    topics = config.kafka.topics
    for messages, order, topic in (
        (features, "event_time", topics.features.name),
        (all_scores, "scored_at", topics.scores.name),
    ):
        publish(_in_order(messages, order).select(F.col("request_id").alias("key"), "value"), config, topic)
    return total


def results_on_topic(config: PipelineConfig) -> int:
    consumer = KafkaConsumer(**client_settings(config))
    try:
        topic = config.kafka.topics.results
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _offsets_read(source: dict, topic: str) -> int:
    """Records a micro-batch took from one topic of a source (its numInputRows counts every scan
    of it, and every topic)."""
    start, end = (
        json.loads(source[k]) if isinstance(source[k], str) else source[k] for k in ("startOffset", "endOffset")
    )
    start = start or {}
    return sum(offset - start.get(topic, {}).get(partition, 0) for partition, offset in end.get(topic, {}).items())


def run(spark: SparkSession, config: PipelineConfig, rate: int, seconds: int, batch_seconds: int) -> dict:
    started = time.monotonic()
    total = load_traffic(spark, config, rate, seconds)
    print(f"loaded {total} requests and {3 * total} scores in {time.monotonic() - started:.0f} s", flush=True)
    per_batch = rate * batch_seconds
    topics = config.kafka.topics
    # The job's own source, one for the three topics: a micro-batch takes a request's three scores too.
    answered = decisions(spark, config, max_offsets=(1 + len(MODELS)) * per_batch)
    query = write_topic(to_messages(answered), config, "bench-rendezvous", topic=topics.results.name)
    try:
        while results_on_topic(config) < total and query.isActive:
            time.sleep(2)
            last = query.lastProgress
            if last:
                print(f"  batch {last['batchId']}: {results_on_topic(config)}/{total} decided", flush=True)
        if query.exception():
            raise SystemExit(f"the rendezvous query failed: {query.exception()}")
        progress = [p for p in query.recentProgress if p["numInputRows"] > 0]
    finally:
        query.stop()
    measured = progress[1:]  # the first micro-batch pays for start-up
    requests = sum(_offsets_read(source, topics.features.name) for p in measured for source in p["sources"])
    phases = {
        key: statistics.mean(p["durationMs"].get(key, 0) for p in measured)
        for key in measured[0]["durationMs"]
        if key != "triggerExecution"
    }
    state = [sum(op["numRowsTotal"] for op in p["stateOperators"]) for p in measured]
    busy_s = sum(p["durationMs"]["triggerExecution"] for p in measured) / 1000
    durations = sorted(p["durationMs"]["triggerExecution"] / 1000 for p in measured)
    decided = results_on_topic(config)
    return {
        "scenario": "rendezvous",
        "models": len(MODELS),
        "offered_rate": rate,
        "batch_seconds": batch_seconds,
        "requests": total,
        "decided": decided,
        "throughput_rps": requests / busy_s if busy_s else 0.0,
        "batch_p50_s": statistics.median(durations),
        "batch_max_s": durations[-1],
        "batches": len(measured),
        "mean_phase_ms": {k: round(v) for k, v in phases.items()},
        "state_rows_max": max(state),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rendezvous", description="Benchmark the rendezvous job alone with 3 models."
    )
    parser.add_argument("--rate", type=int, default=5000, help="offered requests per second (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=40, help="seconds of traffic (default: %(default)s)")
    parser.add_argument(
        "--batch-seconds", type=int, default=2, help="seconds of traffic per micro-batch (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=19192, help="the benchmark broker's port (default: %(default)s)")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting to try, as in spark-submit (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="where results go (default: bench/results)"
    )
    args = parser.parse_args(argv)

    work = ROOT / "var" / "bench" / f"rendezvous-{int(time.time())}"
    spark_conf = dict(setting.split("=", 1) for setting in args.conf)
    config = bench_config(work, args.port, spark_conf)
    broker = LocalBroker.from_config(config)
    broker.start()
    spark = build_session(config, "rdv-bench-rendezvous")
    try:
        ensure_topics(client_settings(config), pipeline_topics(config))
        result = run(spark, config, args.rate, args.seconds, args.batch_seconds)
    finally:
        spark.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    if result["decided"] != result["requests"]:
        raise SystemExit(
            f"{result['decided']} results for {result['requests']} requests: not every request was "
            "answered exactly once"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    (args.out / f"rendezvous-{result['date'][:10]}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"micro-batches of {args.batch_seconds} s of traffic at {args.rate}/s: p50 {result['batch_p50_s']:.2f} s, "
        f"max {result['batch_max_s']:.2f} s; {result['decided']} requests, each answered once"
    )
    print(
        f"mean time per micro-batch by phase (ms): {result['mean_phase_ms']}; state rows at most {result['state_rows_max']}"
    )
    print(f"rendezvous: {result['throughput_rps']:.0f} requests/s sustained with {result['models']} models")


if __name__ == "__main__":
    main()

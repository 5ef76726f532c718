"""One Spark application of a benchmark scenario: the pipeline's own jobs, built as `rdv up` builds
them, or the limit scenario's identity hops; every progress report of every query is appended to
<var>/run/progress-log/<query>.jsonl (rdv/progress.py), which the benchmark reads for batch
durations and lag.

Usage (the benchmark starts it; by hand only to debug a scenario):
    python -m bench.app --conf var/bench/<run>/conf --jobs features score:champion rendezvous
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from jobs import decide, decoy, featurize, record, score
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic, write_topic

# The limit scenario's topics: raw -> hop-1 -> hop-2 -> hop-3, each hop a query that copies.
HOP_TOPICS = ("rdv.hop-1", "rdv.hop-2", "rdv.hop-3")


def hops(spark: SparkSession, config: PipelineConfig) -> list[StreamingQuery]:
    """The same Kafka -> Spark -> Kafka hops as the pipeline, three times, with nothing in between."""
    sources = (config.kafka.topics.raw.name, *HOP_TOPICS[:-1])
    return [
        write_topic(
            read_topic(spark, config, source, every=config.spark.trigger).select("key", "value"),
            config,
            f"hop-{i}",
            topic=target,
        )
        for i, (source, target) in enumerate(zip(sources, HOP_TOPICS), start=1)
    ]


def build(spark: SparkSession, config: PipelineConfig, jobs: list[str]) -> list[StreamingQuery]:
    queries: list[StreamingQuery] = []
    for job in jobs:
        kind, _, model = job.partition(":")
        if kind == "hops":
            queries += hops(spark, config)
        elif kind == "features":
            queries += featurize.build_all(spark, config)
        elif kind == "score":
            queries.append(score.build(spark, config, model))
        elif kind == "decoy":
            queries += decoy.build_all(spark, config)
        elif kind == "rendezvous":
            queries += decide.build(spark, config)
        elif kind == "record":
            queries += record.build_all(spark, config)
        else:
            raise SystemExit(
                f"bench.app: unknown job {job!r} (hops, features, score:<model>, decoy, rendezvous, record)"
            )
    return queries


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("One Spark application of a benchmark scenario.")
    parser.add_argument(
        "--jobs",
        nargs="+",
        required=True,
        help="hops, features, score:<model>, decoy, rendezvous and record, in any combination",
    )
    args, _ = parser.parse_known_args(argv)
    recording_only = all(job in ("decoy", "record") for job in args.jobs)
    run_job(
        "rdv-bench",
        parser,
        lambda spark, config, args: build(spark, config, args.jobs),
        argv,
        progress_history=True,
        latency_path=not recording_only,
    )


if __name__ == "__main__":
    main()

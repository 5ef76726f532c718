"""The rendezvous job: one answer per request under its policy, and every score of every model kept.

Reads the requests (rdv.features) and the scores (rdv.scores); answers go to rdv.results and
Delta `results`, every score to Delta `scores` (see rendezvous/selection.py for the rules).

Usage:
    spark-submit --packages <see README> jobs/decide.py --conf conf
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from features.transform import parse_feature_records
from models.scoring import SCORE_RECORD
from rdv.config import PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic
from rendezvous.selection import rendezvous
from rendezvous.sinks import answers_sink

QUERY = "rendezvous"


def build(spark: SparkSession, config: PipelineConfig) -> StreamingQuery:
    topics = config.kafka.topics
    requests = parse_feature_records(read_topic(spark, config, topics.features.name))
    scores = read_topic(spark, config, topics.scores.name).select(
        F.from_json(F.col("value").cast("string"), SCORE_RECORD).alias("s")
    ).select("s.*")
    answers = rendezvous(requests, scores, config.rendezvous.decision_delay_ms)
    return (
        answers.writeStream.outputMode("append")
        .foreachBatch(answers_sink(config))
        .option("checkpointLocation", config.checkpoint(QUERY))
        .queryName(QUERY)
        .trigger(processingTime=config.spark.trigger)
        .start()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Answer every request under its policy and keep every score.")
    run_job("rdv-rendezvous", parser, lambda spark, config, args: [build(spark, config)], argv)


if __name__ == "__main__":
    main()

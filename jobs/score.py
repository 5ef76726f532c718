"""The model job: one per model, scoring every feature record on rdv.features into rdv.scores.

The same job serves every model; only its config, conf/models/<name>.yaml, differs. A job whose
URI follows a registry alias moves to the alias's new version between micro-batches, without a
restart (see models/following.py). A request that crashes the model's Python worker is answered
with an error record, and the rest of its micro-batch is scored (see models/crashes.py).

Usage:
    spark-submit --packages <see README> jobs/score.py --conf conf --model champion
"""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from features.records import parse_feature_records
from models.cost import CostSampler, MeasuredBy, UdfMeter
from models.crashes import publish_isolating_crashes
from models.following import ModelFollower
from models.registry import ModelNotFound, ResolvedModel, model_inputs
from models.scoring import failed_scores, feature_columns, score_record_columns, scorer, ship, shipped_name, with_scores
from rdv.config import ConfigError, PipelineConfig
from rdv.durations import duration_ms
from rdv.jobrun import argument_parser, run_job
from rdv.streams import for_each_batch, message_columns, publish, read_topic, to_messages


def build(
    spark: SparkSession, config: PipelineConfig, model_name: str, measured_by: MeasuredBy = "tasks"
) -> StreamingQuery:
    """The model's query. measured_by says how its CPU is sampled into `costs` (models/cost.py):
    `processes` when the application runs this query alone, `tasks` when it shares it."""
    model = config.model(model_name)
    allowed = feature_columns(model, config.spec, config.conf_dir)
    config_file = config.conf_dir / "models" / f"{model.name}.yaml"

    def prepare(resolved: ResolvedModel) -> list[str]:
        """The version's own inputs if its signature names them, all the config allows if not;
        checked before the version scores anything."""
        inputs = model_inputs(resolved)
        missing = [c for c in inputs or [] if c not in allowed]
        if missing:
            raise ConfigError(
                f"{config_file}: features: model version {resolved.version} also needs {', '.join(missing)}"
            )
        ship(spark.sparkContext, resolved)
        return list(inputs or allowed)

    try:
        follower = ModelFollower(
            model,
            config.tracking_uri,
            config.path(config.paths.var) / "models",
            prepare,
            duration_ms(config.mlflow.alias_check) / 1000,
            config.alias_marker,
        )
    except ModelNotFound as error:
        raise ConfigError(f"{config_file}: uri: {error}") from None

    topic = config.kafka.topics.scores.name
    # The scoring UDF and the records' projection, built once per version: every column built from
    # Python costs py4j round trips, on every micro-batch if built there.
    in_use, udf, scored = None, None, []
    meter = UdfMeter.create(spark.sparkContext)
    costs = CostSampler(spark, config, model.name, measured_by, meter)

    def score_batch(requests: DataFrame, batch_id: int) -> None:
        nonlocal in_use, udf, scored
        serving = follower.refresh()
        costs.before_batch(serving.model)
        if serving is not in_use:
            in_use = serving
            udf = scorer(shipped_name(serving.model), serving.columns, model.output, model.threshold, meter)
            scored = message_columns(score_record_columns(serving.model))
        publish_isolating_crashes(
            requests,
            lambda rows: publish(with_scores(rows, udf).select(*scored), config, topic),
            lambda rows, error: publish(to_messages(failed_scores(rows, serving.model, error)), config, topic),
        )

    messages = read_topic(
        spark,
        config,
        config.kafka.topics.features.name,
        model.spark.max_offsets_per_trigger,
        every=model.spark.trigger or config.spark.trigger,
    )
    requests = parse_feature_records(messages, config.spec.features_schema()).where(F.col("kind") == "request")
    return for_each_batch(requests, config, f"score-{model.name}", score_batch)


APP = "rdv-score"  # the Spark application's name


def parser() -> argparse.ArgumentParser:
    job = argument_parser("Score feature records with one configured model.")
    job.add_argument("--model", required=True, help="the model config's name: conf/models/<name>.yaml")
    return job


def _measured_by(spark: SparkSession) -> MeasuredBy:
    """A job of its own in local mode has all of its work in its processes; on a cluster, executors
    run elsewhere, and the query's tasks and UDF are what can be attributed to it."""
    return "processes" if (spark.sparkContext.master or "").startswith("local") else "tasks"


def main(argv: list[str] | None = None) -> None:
    run_job(
        APP,
        parser(),
        lambda spark, config, args: [build(spark, config, args.model, measured_by=_measured_by(spark))],
        argv,
        latency_path=True,
    )


if __name__ == "__main__":
    main()

"""The model job: one per model, scoring every feature record on rdv.features into rdv.scores.

The same job serves every model; only its config, conf/models/<name>.yaml, differs.

Usage:
    spark-submit --packages <see README> jobs/score.py --conf conf --model logreg
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from features.transform import parse_feature_records
from models.registry import ModelNotFound, model_inputs, resolve_model
from models.scoring import feature_columns, score_requests, scorer
from rdv.config import ConfigError, PipelineConfig
from rdv.jobrun import argument_parser, run_job
from rdv.streams import read_topic, to_messages, write_topic


def build(spark: SparkSession, config: PipelineConfig, model_name: str) -> StreamingQuery:
    model = config.model(model_name)
    columns = feature_columns(model, config.conf_dir)
    config_file = config.conf_dir / "models" / f"{model.name}.yaml"
    try:
        resolved = resolve_model(model, config.tracking_uri, config.path(config.paths.var) / "models")
    except ModelNotFound as error:
        raise ConfigError(f"{config_file}: uri: {error}") from None
    missing = [c for c in model_inputs(resolved) or [] if c not in columns]
    if missing:  # caught here, not at the first micro-batch
        raise ConfigError(f"{config_file}: features: model version {resolved.version} also needs {', '.join(missing)}")
    spark.sparkContext.addFile(str(resolved.local_dir), recursive=True)
    messages = read_topic(spark, config, config.kafka.topics.features.name, model.spark.max_offsets_per_trigger)
    requests = parse_feature_records(messages).where(F.col("kind") == "request")
    scores = score_requests(requests, resolved, scorer(resolved.local_dir.name, columns, model.output, model.threshold))
    return write_topic(
        to_messages(scores), config, f"score-{model.name}", topic=config.kafka.topics.scores.name,
        trigger=model.spark.trigger,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Score feature records with one configured model.")
    parser.add_argument("--model", required=True, help="the model config's name: conf/models/<name>.yaml")
    run_job("rdv-score", parser, lambda spark, config, args: [build(spark, config, args.model)], argv)


if __name__ == "__main__":
    main()

"""The latency path of the pipeline in one Spark application: features, each model, rendezvous.

The embedded default runs two applications, this one and the recording one (jobs/recording.py),
which `rdv up` starts at a lower CPU priority, so that recording into Delta never takes the cores
an answer waits for. Production runs each job as its own spark-submit (`rdv up --separate` does
that locally).

Usage:
    spark-submit --packages <see README> jobs/pipeline.py --conf conf [--models champion challenger]
"""

from __future__ import annotations

from jobs import decide, featurize, score
from rdv.jobrun import argument_parser, run_job


def build_all(spark, config, model_names: list[str]):
    return [
        *featurize.build_all(spark, config),
        *[score.build(spark, config, name) for name in model_names],
        *decide.build(spark, config),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser("Run the features, model and rendezvous jobs in one Spark application.")
    parser.add_argument("--models", nargs="*", help="model configs to run (default: all in conf/models)")
    run_job(
        "rdv-pipeline",
        parser,
        lambda spark, config, args: build_all(spark, config, args.models or sorted(config.models)),
        argv,
        latency_path=True,
    )


if __name__ == "__main__":
    main()

"""`rdv compare`, `rdv report` and `rdv sql`: the comparison of the models, and the tables by name."""

from __future__ import annotations

import argparse
from pathlib import Path


def _compare(config, args) -> int:
    from jobs.compare import main as compare_job

    compare_job([*config.conf_args, *(["--every", args.every] if args.every else [])])
    return 0


def _report(config, args) -> int:
    from comparison.report import write_report
    from rdv.spark import build_session

    spark = build_session(config, "rdv-report")
    try:
        report = write_report(spark, config, args.out)
    finally:
        spark.stop()
    print(report.summary)
    print(f"report: {report.path}")
    return 0


def _sql(config, args) -> int:
    from rdv.catalog import register_tables
    from rdv.spark import build_session

    spark = build_session(config, "rdv-sql")
    try:
        register_tables(spark, config)
        spark.sql(args.query).show(args.limit, truncate=False)
    finally:
        spark.stop()
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="recompute the comparison tables, the recommendation per challenger and drift",
        description="Read scores, results, labels, archive and costs; overwrite the Delta tables "
        "comparison, comparison_tests (both with each model's CPU per 1,000 requests), "
        "comparison_agreement and drift (windows, metrics and the recommendation "
        "rule are in the compare section of pipeline.yaml); with compare.promote.enabled, then move "
        "@champion under guards, or back on a regression, and append the change to promotions; print a "
        "summary. See docs/analysis.md.",
    )
    compare.add_argument("--every", help="repeat every this long, e.g. '15 minutes' (default: once)")
    compare.set_defaults(run=_compare)
    report = commands.add_parser(
        "report",
        help="write the comparison as a self-contained HTML report and summarize it",
        description="Read what `rdv compare` wrote and write one HTML file with the "
        "plots embedded; print a short summary.",
    )
    report.add_argument("--out", type=Path, help="the HTML file (default: var/reports/comparison-<time>.html)")
    report.set_defaults(run=_report)
    sql = commands.add_parser(
        "sql",
        help="run a Spark SQL query over the pipeline's tables, by name",
        description="Every Delta table of the pipeline is registered in the database of "
        "compare.database (default rdv): SELECT * FROM rdv.comparison.",
    )
    sql.add_argument("query", help='the query, e.g. "SELECT model, avg(roc_auc) FROM rdv.comparison GROUP BY model"')
    sql.add_argument("--limit", type=int, default=50, help="rows to show at most (default: %(default)s)")
    sql.set_defaults(run=_sql)

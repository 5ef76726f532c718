"""The pipeline's Delta tables by name in Spark SQL: `SELECT * FROM rdv.comparison`.

Each table is registered as an external table of the configured database (compare.database),
pointing at its location under paths.tables; dropping one drops the name, never the data. With
a persistent metastore (Hive, Unity Catalog, Glue) a registration made once by `rdv compare`
stays; with the local default's in-memory catalog it lasts for the session, so the notebook,
`rdv sql` and `rdv report` register the tables again when they start.
"""
from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from rdv.config import PipelineConfig

TABLES = (
    "archive", "scores", "results", "labels", "quarantine", "quarantine_replays", "data_quality",
    "comparison", "comparison_tests", "comparison_agreement", "drift",
)


def register_tables(spark: SparkSession, config: PipelineConfig) -> list[str]:
    """Register every table that exists; returns their qualified names."""
    database = config.compare.database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    registered = []
    for name in TABLES:
        path = config.table(name)
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        location = path.replace("'", "\\'")
        spark.sql(f"CREATE TABLE IF NOT EXISTS `{database}`.`{name}` USING DELTA LOCATION '{location}'")
        registered.append(f"{database}.{name}")
    return registered

"""The pipeline's Delta tables by name in Spark SQL: `SELECT * FROM rdv.comparison`.

Each table is registered as an external table of the configured database (compare.database),
pointing at its location under paths.tables; dropping one drops the name, never the data. With
a persistent metastore (Hive, Unity Catalog, Glue) a registration made once by `rdv compare`
stays; with the local default's in-memory catalog it lasts for the session, so the notebook,
`rdv sql` and `rdv report` register the tables again when they start.
"""

from __future__ import annotations

import re

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from rdv.config import PipelineConfig

TABLES = (
    "archive",
    "scores",
    "results",
    "labels",
    "costs",
    "quarantine",
    "quarantine_replays",
    "data_quality",
    "comparison",
    "comparison_tests",
    "comparison_agreement",
    "drift",
    "promotions",
)


def register_tables(spark: SparkSession, config: PipelineConfig) -> list[str]:
    """Register every table that exists; returns their qualified names. A name that points
    elsewhere (another conf's tables) is pointed here."""
    database = config.compare.database
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    registered = []
    for name in TABLES:
        path, qualified = config.table(name), f"`{database}`.`{name}`"
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        location = path.replace("'", "\\'")
        create = f"CREATE TABLE {qualified} USING DELTA LOCATION '{location}'"
        if not spark.catalog.tableExists(f"{database}.{name}"):
            spark.sql(create)
        elif not _same(spark.sql(f"DESCRIBE DETAIL {qualified}").collect()[0]["location"], path):
            spark.sql(f"DROP TABLE {qualified}")  # external: the name goes, the data stays
            spark.sql(create)
        registered.append(f"{database}.{name}")
    return registered


def _same(location: str, path: str) -> bool:
    """A catalog's location (file:/x/y) and a configured path (/x/y, or a URI) name the same place."""

    def plain(text: str) -> str:
        return re.sub(r"^file:/*", "/", text).rstrip("/")

    return plain(location) == plain(path)

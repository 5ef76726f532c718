"""The Delta tables the jobs record into: created once, with statistics that skip no personal
data, and each key recorded once though the topics they record are written at least once."""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import DateType, NumericType, StringType, StructType, TimestampNTZType, TimestampType

from rdv.config import PipelineConfig
from rdv.streams import RECORDING_POOL, for_each_batch, txn_app_id

# Columns that hold personal data or a pseudonym of it: kept out of the column statistics in Delta's
# transaction log, which outlives a row's deletion (docs/data-quality.md, "Forgetting a data subject").
UNINDEXED_COLUMNS = ("subject", "message", "raw")
_SKIPPABLE = (NumericType, StringType, DateType, TimestampType, TimestampNTZType)


def create_table(spark: SparkSession, path: str, schema: StructType, partition_by: str) -> None:
    """Create a Delta table for rows of schema unless it exists, with statistics (for data skipping)
    on its top-level columns of the types Delta can skip on (numbers, strings, dates, timestamps),
    never on UNINDEXED_COLUMNS nor on the partition column (Delta refuses it there)."""
    indexed = [
        f.name
        for f in schema.fields
        if f.name not in (*UNINDEXED_COLUMNS, partition_by) and isinstance(f.dataType, _SKIPPABLE)
    ]
    (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(schema)
        .partitionedBy(partition_by)
        .property("delta.dataSkippingStatsColumns", ",".join(indexed))
        .execute()
    )


@dataclass(frozen=True)
class KeyedTable:
    """A Delta table that holds each key once.

    The topics these tables record are written at least once: a job killed between its Kafka write
    and its checkpoint sends the batch again. So `record` keeps one row per key of a batch (the
    smallest `first`) and MERGEs in only the keys the table does not hold yet, looking only at the
    rows whose `since` lies within the batch's range (a re-sent record keeps its `since`, and
    Delta skips the files outside it). A batch run again after a crash inserts nothing twice.
    Rows with a null key part cannot be matched: they are appended, once per micro-batch of the
    query (streams.txn_app_id), so a batch run again after a crash appends them once.
    """

    path: str
    key: tuple[str, ...]
    since: str
    first: str
    query: str  # the name of the query that records into it

    @classmethod
    def create(
        cls,
        spark: SparkSession,
        config: PipelineConfig,
        table: str,
        schema: StructType,
        key: tuple[str, ...],
        since: str,
        first: str,
        query: str,
        partition_by: str = "event_date",
    ) -> KeyedTable:
        create_table(spark, config.table(table), schema, partition_by)
        return cls(config.table(table), key, since, first, query)

    def _keyed(self) -> Column:
        keyed = F.lit(True)
        for column in self.key:
            keyed = keyed & F.col(column).isNotNull()
        return keyed

    def record(self, rows: DataFrame, batch_id: int) -> None:
        """Record one batch's rows; idempotent per batch_id."""
        spark, keyed, since = rows.sparkSession, self._keyed(), self.since
        rows = rows.persist()
        try:
            counts = rows.agg(
                F.count(F.when(keyed, 1)).alias("keyed"),
                F.count(F.when(~keyed, 1)).alias("unkeyed"),
                F.min(F.unix_micros(since)).alias("low"),
                F.max(F.unix_micros(since)).alias("high"),
            ).collect()[0]
            if counts["keyed"]:
                earliest = Window.partitionBy(*self.key).orderBy(F.col(self.first).asc_nulls_last())
                unique = rows.where(keyed).withColumn("_n", F.row_number().over(earliest)).where("_n = 1").drop("_n")
                condition = " AND ".join(f"t.`{c}` = s.`{c}`" for c in self.key)
                if counts["low"] is not None:
                    condition += (
                        f" AND t.`{since}` >= timestamp_micros({counts['low']})"
                        f" AND t.`{since}` <= timestamp_micros({counts['high']})"
                    )
                (
                    DeltaTable.forPath(spark, self.path)
                    .alias("t")
                    .merge(unique.alias("s"), condition)
                    .whenNotMatchedInsertAll()
                    # A column added to a record (a new field of the score record, say) is added to the table.
                    .withSchemaEvolution()
                    .execute()
                )
            if counts["unkeyed"]:
                # Idempotent per batch instead: the same batch run again is not appended twice.
                (
                    rows.where(~keyed)
                    .write.format("delta")
                    .mode("append")
                    .option("mergeSchema", "true")
                    .option("txnAppId", txn_app_id(spark, self.query))
                    .option("txnVersion", batch_id)
                    .save(self.path)
                )
        finally:
            rows.unpersist()


def write_table(
    rows: DataFrame,
    config: PipelineConfig,
    query_name: str,
    table: str,
    key: tuple[str, ...],
    since: str,
    first: str,
    partition_by: str = "event_date",
) -> StreamingQuery:
    """Start a query recording a stream's rows into a KeyedTable, on the table trigger (a Delta
    commit per micro-batch is the cost, and nobody waits for these rows)."""
    target = KeyedTable.create(
        rows.sparkSession, config, table, rows.schema, key, since, first, query_name, partition_by
    )
    return for_each_batch(
        rows, config, query_name, target.record, trigger=config.spark.table_trigger, pool=RECORDING_POOL
    )

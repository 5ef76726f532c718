"""What the record encoding on Kafka costs: a feature record decoded and encoded as JSON (what the
topics carry, docs/contracts.md) against Avro, Spark's own binary encoding.

It builds `--records` feature records of the shipped feature spec, caches them as JSON and as
Avro messages, and times with every core of the local session, the median of `--runs` after one
warm-up run each: decoding every field (what each model, the decoy and the rendezvous do with a
message of rdv.features) and encoding (what the features job does once per request). No broker is
involved: this is the per-record cost alone, to set against a pipeline's CPU per 1,000 requests.

Spark's Avro functions are not part of pyspark's jars; the first run copies `spark-avro` of
pyspark's version from Maven's local repository (fetching it once) into var/jars/bench.

Usage:
    python -m bench.encoding                       # or: --records 400000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import pyspark
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro, to_avro
from pyspark.sql.types import StructField

from features.records import feature_record_schema
from rdv.config import load_config
from rdv.feature_spec import load_feature_spec
from rdv.spark import build_session
from rdv.spark_launch import local_jars

ROOT = Path(__file__).resolve().parent.parent


def avro_jar() -> Path:
    """spark-avro for the installed pyspark, copied once into var/jars/bench."""
    out = ROOT / "var" / "jars" / "bench"
    jar = out / f"spark-avro_2.13-{pyspark.__version__}.jar"
    if not jar.exists():
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:copy",
                f"-DoutputDirectory={out}",
                f"-Dartifact=org.apache.spark:spark-avro_2.13:{pyspark.__version__}:jar",
            ],
            check=True,
        )
    return jar


def session() -> SparkSession:
    config = load_config(ROOT / "conf")
    jars = ",".join([*local_jars(config), str(avro_jar())])
    spark_conf = {**config.spark.conf, "spark.jars": jars}
    return build_session(
        config.model_copy(update={"spark": config.spark.model_copy(update={"conf": spark_conf})}), "bench-encoding"
    )


def _value(field: StructField, seed: int) -> Column:
    kind = field.dataType.simpleString()
    values = {
        "double": F.rand(seed),
        "int": (F.rand(seed) * 100).cast("int"),
        "boolean": F.rand(seed) > 0.5,
        "string": F.concat(F.lit("v"), (F.col("id") % 1000).cast("string")),
        "timestamp": F.current_timestamp(),
    }
    return values[kind].alias(field.name)


def feature_records(spark: SparkSession, count: int) -> DataFrame:
    """`count` feature records of the shipped spec, cached, with random feature values."""
    features = load_feature_spec(ROOT / "conf" / "features.yaml").features_schema()
    schema = feature_record_schema(features)
    rows = spark.range(count).select(
        F.lit(1).alias("schema_version"),
        F.lit("request").alias("kind"),
        F.expr("uuid()").alias("request_id"),
        F.sha2(F.col("id").cast("string"), 256).alias("subject"),
        F.current_timestamp().alias("event_time"),
        F.struct(*[_value(f, i) for i, f in enumerate(features.fields)]).alias("features"),
        F.struct(
            F.lit("preferred").alias("strategy"),
            F.lit(10000).alias("deadline_ms"),
            F.array(F.lit("champion")).alias("preference"),
            F.lit(0.0).alias("default_score"),
            *[F.lit(None).cast("string").alias(name) for name in ("criterion", "rule", "arm")],
        ).alias("policy"),
    )
    records = spark.createDataFrame(rows.rdd, schema).cache()
    records.count()
    return records


def median_seconds(frame: DataFrame, runs: int) -> float:
    """Wall time of computing every row of `frame`, the median of `runs` after a warm-up run."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=400_000, help="feature records to encode and decode")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each, after one warm-up run")
    args = parser.parse_args()

    spark = session()
    records = feature_records(spark, args.records)
    schema = records.schema
    record = F.struct(*records.columns)
    avro_schema = spark.sparkContext._jvm.org.apache.spark.sql.avro.SchemaConverters.toAvroType(
        spark._jsparkSession.parseDataType(schema.json()), False, "topLevelRecord", ""
    ).toString()
    encoded = {
        "json": records.select(F.to_json(record).cast("binary").alias("value")).cache(),
        "avro": records.select(to_avro(record).alias("value")).cache(),
    }
    decoders = {
        "json": lambda value: F.from_json(value.cast("string"), schema),
        "avro": lambda value: from_avro(value, avro_schema),
    }
    encoders = {"json": lambda: F.to_json(record).cast("binary"), "avro": lambda: to_avro(record)}
    cores = spark.sparkContext.defaultParallelism
    print(f"{args.records} feature records, {cores} cores, the median of {args.runs} runs")
    for name, messages in encoded.items():
        size = messages.select(F.avg(F.length("value"))).first()[0]
        decoded = messages.select(decoders[name](F.col("value")).alias("r")).select("r.*", "r.features.*", "r.policy.*")
        decode = median_seconds(decoded, args.runs)
        messages.unpersist(blocking=True)  # or the cache would answer the encoding below
        encode = median_seconds(records.select(encoders[name]().alias("value")), args.runs)
        print(
            f"{name}: {size:.0f} bytes a record; decode {args.records / decode / 1000:.0f}k records/s, "
            f"{decode * cores / args.records * 1000:.4f} CPU s per 1,000; encode "
            f"{args.records / encode / 1000:.0f}k records/s, {encode * cores / args.records * 1000:.4f} CPU s per 1,000"
        )
    spark.stop()


if __name__ == "__main__":
    main()

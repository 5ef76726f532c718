"""How a Spark driver is launched, without importing Spark: the versions the project runs with, the
packages a cluster fetches, the jars `make jars` caches, and the key of the driver's Java options.

The session factory (rdv/spark.py) and the spark-submit commands of `rdv up --separate`
(rdv/operations/runner.py) and `make dist` (rdv/operations/dist.py) share them; the latter two run in commands that never
start Spark themselves.
"""

from __future__ import annotations

from rdv.config import PipelineConfig

SPARK_VERSION = "4.2.0"
DELTA_VERSION = "4.4.0"
# The driver JVM's options: the session's own come first, then those of spark.conf.
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
# What a cluster user passes to spark-submit instead of the cached jars.
PACKAGES = f"org.apache.spark:spark-sql-kafka-0-10_2.13:{SPARK_VERSION},io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}"


def cached_jars(config: PipelineConfig) -> list[str]:
    """The Kafka connector's and Delta's jars as `make jars` caches them; none on a host without them."""
    return sorted(str(p) for p in (config.path(config.paths.jars) / "spark").glob("*.jar"))


def local_jars(config: PipelineConfig) -> list[str]:
    jar_dir = config.path(config.paths.jars) / "spark"
    jars = cached_jars(config)
    if not jars:
        raise RuntimeError(
            f"no Spark jars under {jar_dir}: run `make jars` (or pass --packages {PACKAGES} to spark-submit)"
        )
    return jars

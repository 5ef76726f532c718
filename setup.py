"""Packaging for rendezvous: champion and challenger models side by side on Spark Structured Streaming.

pyspark is a dependency for local use; on a cluster it is provided by the cluster and the
jobs are shipped with spark-submit (see README).
"""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
direct = [
    line.split("#")[0].strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="rendezvous",
    version="0.1.0",
    description="The rendezvous architecture for ML models on Spark Structured Streaming, Kafka and Delta",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["rdv", "rdv.*", "features", "models", "rendezvous", "comparison", "jobs"]),
    package_data={"rdv": ["scheduler-pools.xml", "log4j2.properties"]},
    install_requires=direct,
    entry_points={"console_scripts": ["rdv = rdv.cli:main"]},
    license="Apache-2.0",
)

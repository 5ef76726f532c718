"""Packaging for rendezvous: champion and challenger models side by side on Spark Structured Streaming.

The metadata, the dependency ranges and the `spark` extra are in pyproject.toml; this file lets
tools that still call setup.py build the same package. Install with `pip install .[spark]` to run
Spark from the environment, or without the extra on a cluster that brings its own Spark and Delta
(docs/deployment.md).
"""
from setuptools import setup

setup()

"""The package's dependency ranges (pyproject.toml) hold the versions the tests run with
(requirements.lock), and the `spark` extra holds the Spark and Delta of the jars."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rdv.spark_launch import DELTA_VERSION, SPARK_VERSION
from tests.helpers import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_range_holds_the_locked_version():
    pins = _lock()
    requirements = [Requirement(r) for r in [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["spark"]]]
    outside = {
        str(r): pins.get(canonicalize_name(r.name))
        for r in requirements
        if pins.get(canonicalize_name(r.name)) is None or not r.specifier.contains(pins[canonicalize_name(r.name)])
    }
    assert not outside, f"pyproject.toml's ranges miss requirements.lock's versions: {outside}"


def test_spark_is_an_extra_with_the_versions_of_the_jars():
    base = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert not base & {"pyspark", "delta-spark"}  # a cluster brings its own
    extra = {canonicalize_name(r.name): r for r in map(Requirement, PROJECT["optional-dependencies"]["spark"])}
    assert extra["pyspark"].specifier.contains(SPARK_VERSION)
    assert list(extra["delta-spark"].specifier) and all(s.operator == "==" for s in extra["delta-spark"].specifier)
    assert extra["delta-spark"].specifier.contains(DELTA_VERSION)

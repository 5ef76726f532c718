"""What an `rdv` command loads: `rdv status` reads files and asks the local broker's pid, so it
loads neither Spark nor SciPy (a second, not a JVM's worth of imports, on every call)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO, write_conf

# Runs the command in a fresh interpreter, then prints the top-level packages it had imported.
PROBE = """
import json, sys
from rdv.commands import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "packages": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def test_rdv_status_with_nothing_running_imports_neither_spark_nor_scipy(tmp_path):
    conf = write_conf(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--conf", str(conf), "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "supervisor: not running" in lines, done.stdout
    probe = json.loads(lines[-1])
    assert probe["code"] == 3  # nothing runs: status says so by its exit code
    packages = set(probe["packages"])
    assert {"rdv", "features", "yaml", "pydantic"} <= packages  # the probe saw the command's imports
    assert not packages & {"pyspark", "py4j", "scipy"}, sorted(packages & {"pyspark", "py4j", "scipy"})

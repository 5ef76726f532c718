"""What a user reads from an `rdv` command that starts Spark: its own lines and nothing else. The
driver JVM's launcher warning about the Vector API's incubator module, and the warning about a
personal-data key that `rdv sql` never uses, were on stderr of every such command before."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO, write_conf


def test_rdv_sql_prints_its_table_and_nothing_on_stderr(tmp_path):
    conf = write_conf(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "rdv.commands", "--conf", str(conf), "sql", "SELECT 1 AS one"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["+---+", "|one|", "+---+", "|1", "|", "+---+"]
    assert done.stderr == ""

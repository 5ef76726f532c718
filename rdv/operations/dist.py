"""`make dist`: what a cluster needs to run the jobs, built from this checkout into one folder.

    dist/
      rendezvous-<version>-py3-none-any.whl  the project's packages: pip install it where jobs are
                                             submitted, and into the executors' Python
      rendezvous-<version>.zip               the same packages for --py-files, for executors whose
                                             Python has the dependencies already
      constraints.txt                        the versions the tests ran with: pip install the wheel
                                             with -c constraints.txt
      packages.txt                           spark-submit's --packages: Kafka's connector and Delta
      jobs/<job>.py                          spark-submit's entry file of each job
      conf/                                  the conf directory, with its profiles

Nothing in it depends on this checkout: a job submitted from it imports the project from the
wheel (or the zip), never from the source tree. docs/deployment.md shows it in use.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from rdv.spark_launch import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
# The jobs a cluster runs, by the module that is each one's entry point.
JOBS = {
    "featurize": "the features job",
    "score": "a model job (--model NAME)",
    "decoy": "the decoy",
    "decide": "the rendezvous job",
    "record": "the recorder (results, scores, quarantine, labels into Delta)",
    "compare": "the comparison tables (batch)",
}
LAUNCHER = '''"""spark-submit's entry file of {what}; its code is the module jobs.{job} of the rendezvous wheel,
which the driver's Python must import (pip install the wheel, or --py-files rendezvous-{version}.zip)."""
from jobs.{job} import main

main()
'''


def build(out: Path, echo=print) -> Path:
    """The wheel, the zip, the entry files, the conf and the lists, in out (emptied first); the wheel's path."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    echo(f"dist: building the wheel into {out}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    # setuptools leaves its build tree beside setup.py; the next build must not pick up stale files.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = out.glob("rendezvous-*.whl")
    version = wheel.name.split("-")[1]
    # A pure-Python wheel is a zip with the packages at its root: what --py-files takes.
    shutil.copyfile(wheel, out / f"rendezvous-{version}.zip")
    jobs = out / "jobs"
    jobs.mkdir()
    for job, what in JOBS.items():
        (jobs / f"{job}.py").write_text(LAUNCHER.format(job=job, what=what, version=version))
    shutil.copytree(ROOT / "conf", out / "conf")
    (out / "packages.txt").write_text(PACKAGES + "\n")
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    (out / "constraints.txt").write_text(
        "\n".join(
            [
                "# The versions the tests ran with: pip install rendezvous-*.whl -c constraints.txt",
                *[line for line in lock if line and not line.startswith("#")],
            ]
        )
        + "\n"
    )
    echo(
        f"dist: {wheel.name}, rendezvous-{version}.zip, jobs/ ({', '.join(JOBS)}), conf/, packages.txt, constraints.txt"
    )
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rdv.operations.dist", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="the folder to build (default: dist)")
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

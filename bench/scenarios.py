"""The benchmark's scenarios: which Spark applications each runs, and where its path ends.

Each application is one process running several jobs' queries, as `rdv up` runs the embedded
default: the latency path in one, the decoy and the recorder in another at a lower CPU priority
(on a 2-core machine, one JVM per job would spend the cores on drivers). The duplicate pipelines
are two applications, since that is what a second pipeline is.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.app import HOP_TOPICS

# The second pipeline of the duplicate scenario has topics of its own; rdv.raw is shared.
B_PREFIX = "rdv-b"


@dataclass(frozen=True)
class App:
    jobs: tuple[str, ...]
    pipeline: str = "a"  # "a": the shipped topics; "b": the duplicate pipeline's own
    recording: bool = False  # run at the recording jobs' lower CPU priority, as `rdv up` does


@dataclass(frozen=True)
class Scenario:
    name: str
    apps: tuple[App, ...]
    outputs: tuple[str, ...]  # where the path ends: one record per request on each
    challengers: int = 0
    about: str = ""


def _rendezvous(challengers: int) -> Scenario:
    models = ("score:champion", *[f"score:challenger-{i}" for i in range(1, challengers + 1)])
    return Scenario(
        f"rendezvous-1+{challengers}",
        (App(("features", *models, "rendezvous")), App(("decoy", "record"), recording=True)),
        ("rdv.results",),
        challengers,
        f"features job, champion and {challengers} challenger(s), rendezvous; decoy and recorder beside",
    )


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "limit",
            (App(("hops",)),),
            (HOP_TOPICS[-1],),
            about="three Kafka -> Spark -> Kafka hops that copy: the best this stack does here",
        ),
        Scenario(
            "champion-only",
            (App(("features", "score:champion")),),
            ("rdv.scores",),
            about="features job and one model job, no rendezvous: before the architecture",
        ),
        _rendezvous(1),
        _rendezvous(2),
        _rendezvous(3),
        Scenario(
            "duplicate-pipelines",
            (App(("features", "score:champion")), App(("features", "score:challenger-1"), "b")),
            ("rdv.scores", f"{B_PREFIX}.scores"),
            1,
            about="two complete features + model pipelines side by side, one per model",
        ),
    )
}

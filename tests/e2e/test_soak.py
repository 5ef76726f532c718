"""The soak, short: a few minutes at a steady load, with the de-duplication window cut to 20 s so
that every state store reaches its plateau within the run (`make soak` runs 20 minutes on the
shipped spec). Each job is its own spark-submit under the supervisor, as in production."""
from __future__ import annotations

from bench.soak import Verdict, run, table


def test_a_short_soak_keeps_state_and_pending_requests_bounded(tmp_path, registry):
    report = run(minutes=3, rate=20, every_s=10, port=19195, work=tmp_path, warm_up_s=45,
                 spec_limits={"dedup_window": "20 seconds"}, registry=registry)
    results = [Verdict(**v) for v in report["verdicts"]]
    print(table(results))
    assert report["restarts"] == {}
    assert report["sent"] >= 0.9 * 20 * 3 * 60  # the load was steady all along
    figures = {v.figure: v for v in results}
    jobs = ("features", "decoy", "score-champion", "score-challenger-1", "rendezvous")
    assert {f"RSS MiB: {job}" for job in jobs} <= set(figures)
    assert {"state rows: features", "state rows: rendezvous", "pending requests"} <= set(figures)
    judged = [v for v in results if not v.figure.startswith("RSS")]  # a JVM's heap grows for longer than this
    assert all(v.bounded for v in judged), table(judged)
    assert figures["state rows: rendezvous"].last > 0
    assert figures["state rows: features"].second_half_max >= 200  # ids of the last 20 s at 20/s, about 400

"""The rendezvous rules with exact decisions: every strategy and every edge case, on a file stream
that stands in for the rendezvous's Kafka source, so each test controls what arrives in which
micro-batch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from models.scoring import SCORE_RECORD
from rdv.config import Timing
from rendezvous.selection import RESULT_RECORD, answers, rank_scores

DEADLINE_MS, GRACE_MS, TRANSIT_MS = 1000, 500, 1000
# As long as deadline + grace: no request's decision point moves for it, unless a test asks for a
# longer one (the fixture's parameter).
LATENESS_MS = DEADLINE_MS + GRACE_MS
T0 = datetime(2026, 1, 1)
ARRIVAL = StructType([StructField("partition", IntegerType()), StructField("offset", LongType())])
SCORE_ROW = StructType(SCORE_RECORD.fields + [StructField("arrival", ARRIVAL)])
COLUMNS = ("request_id", "model", "score", "in_time", "reason", "decided_at")


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def iso(ms: int) -> str:
    return at(ms).isoformat(timespec="milliseconds") + "Z"


def policy(
    strategy="preferred",
    preference=("champion", "challenger"),
    criterion=None,
    rule=None,
    arm=None,
    deadline_ms=DEADLINE_MS,
):
    return {
        "strategy": strategy,
        "deadline_ms": deadline_ms,
        "preference": list(preference),
        "default_score": -1.0,
        "criterion": criterion,
        "rule": rule,
        "arm": arm,
    }


PREFERRED = policy()


def request(request_id, pol=PREFERRED, event_ms=0):
    return {
        "schema_version": 1,
        "kind": "request",
        "request_id": request_id,
        "event_time": iso(event_ms),
        "features": {},
        "policy": pol,
    }


def heartbeat(ms):
    return {"schema_version": 1, "kind": "heartbeat", "event_time": iso(ms)}


def score(request_id, model, scored_ms, value=0.9, role=None, pol=PREFERRED, error=None, event_ms=0):
    role = role or {"logreg": "champion", "gbt": "challenger", "canary": "canary"}.get(model, "challenger")
    return {
        "request_id": request_id,
        "model": model,
        "registered_model": "fraud",
        "model_version": "3",
        "role": role,
        "score": None if error else value,
        "label": None if error else int(value >= 0.5),
        "error": error,
        "scored_at": iso(scored_ms),
        "event_time": iso(event_ms),
        "policy": pol,
    }


def frame(spark, schema, records):
    return spark.read.schema(schema).json(spark.sparkContext.parallelize([json.dumps(r) for r in records]))


def test_rank_is_the_place_of_the_model_or_its_role_and_canaries_and_errors_have_none(spark):
    asks_for_all = policy(preference=("canary", "champion", "gbt"))
    scores = frame(
        spark,
        SCORE_ROW,
        [
            {**score("a", "logreg", 400, pol=asks_for_all), "arrival": {"partition": 0, "offset": 1}},
            {**score("a", "gbt", 1200, pol=asks_for_all), "arrival": {"partition": 0, "offset": 2}},
            {**score("a", "canary", 100, pol=asks_for_all), "arrival": {"partition": 0, "offset": 3}},
            {
                **score("a", "other", 1600, pol=asks_for_all, error="raised ValueError: x"),
                "arrival": {"partition": 0, "offset": 4},
            },
        ],
    )
    actual = rank_scores(scores, GRACE_MS).select("model", "rank", "in_time", "in_grace")
    expected = spark.createDataFrame(
        [
            ("logreg", 2, True, False),
            ("gbt", 3, False, True),
            ("canary", None, True, False),
            ("other", None, False, False),
        ],
        "model string, rank int, in_time boolean, in_grace boolean",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


FEATURES_TOPIC, SCORES_TOPIC = "rdv.features", "rdv.scores"
MESSAGE = StructType(
    [
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("value", StringType()),
    ]
)


@pytest.fixture
def rendezvous(spark, tmp_path, request):
    """A file source standing in for the rendezvous's Kafka source of rdv.features,
    rdv.heartbeats and rdv.scores. send() writes a file, advance() runs the micro-batches the
    files make and returns every answer so far. The lateness is LATENESS_MS, or the fixture's
    parameter where a test gives one."""
    messages_dir = tmp_path / "messages"
    messages_dir.mkdir()
    messages = spark.readStream.schema(MESSAGE).json(str(messages_dir))
    table = f"answers_{tmp_path.name}"
    timing = Timing(DEADLINE_MS, GRACE_MS, TRANSIT_MS, getattr(request, "param", LATENESS_MS))
    query = (
        answers(messages, SCORES_TOPIC, timing)
        .writeStream.format("memory")
        .queryName(table)
        .option("checkpointLocation", str(tmp_path / "ck"))
        .start()
    )
    files, offsets = [], iter(range(1_000_000))

    class Rendezvous:
        def send(self, *records):
            """One micro-batch's worth, in one file: requests and heartbeats as messages of
            rdv.features, scores as messages of rdv.scores, each score at the next offset of
            partition 0 (its arrival order)."""
            lines = [
                {
                    "topic": SCORES_TOPIC if "model" in r else FEATURES_TOPIC,
                    "partition": 0,
                    "offset": next(offsets),
                    "value": json.dumps(r),
                }
                for r in records
            ]
            path = messages_dir / f"{len(files):04d}.json"
            path.write_text("".join(json.dumps(line) + "\n" for line in lines))
            files.append(path)

        def plan(self) -> str:
            """The physical plan of the last micro-batch."""
            return query._jsq.explainInternal(False)

        def advance(self):
            query.processAllAvailable()
            query.processAllAvailable()  # the batch without data in which the watermark decides
            return spark.table(table)

    yield Rendezvous()
    query.stop()


def expect(spark, rows):
    schema = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in RESULT_RECORD.fields if f.name in COLUMNS)
    return spark.createDataFrame(rows, schema)


def assert_answers(spark, actual, rows):
    assert_df_equality(actual.select(*COLUMNS), expect(spark, rows), ignore_row_order=True, ignore_nullable=True)


def test_preferred_answers_the_first_preference_in_time_at_once_and_falls_back_at_the_decision_point(spark, rendezvous):
    rendezvous.send(
        request("fast"),
        request("second"),
        request("late"),
        request("too-late"),
        request("canary-only"),
        request("failed"),
        score("fast", "logreg", 500),
        score("fast", "gbt", 200, value=0.1),
        score("second", "gbt", 900, value=0.2),
        score("second", "logreg", 1100),
        score("late", "gbt", 1400, value=0.3),
        score("too-late", "logreg", 1501),
        score("canary-only", "canary", 100),
        score("failed", "logreg", 100, error="not_finite: nan"),
        score("failed", "gbt", 700, value=0.4),
    )
    # The first preference came in time: answered in this micro-batch, decided when it was scored.
    assert_answers(spark, rendezvous.advance(), [("fast", "logreg", 0.9, True, "preferred", at(500))])

    rendezvous.send(heartbeat(5000))  # event time passes every decision point (1.5 s) by the transit
    decision_point = at(DEADLINE_MS + GRACE_MS)
    assert_answers(
        spark,
        rendezvous.advance(),
        [
            ("fast", "logreg", 0.9, True, "preferred", at(500)),
            ("second", "gbt", 0.2, True, "fallback", decision_point),  # the first preference in time
            ("late", "gbt", 0.3, False, "fallback", decision_point),  # none in time: a late one within the grace
            ("too-late", None, -1.0, None, "default", decision_point),  # after the grace: nothing counts
            ("canary-only", None, -1.0, None, "default", decision_point),  # a canary never answers
            ("failed", "gbt", 0.4, True, "fallback", decision_point),  # an error record is no answer
        ],
    )


def test_first_answers_the_first_score_to_arrive_in_time_from_any_preference(spark, rendezvous):
    first = policy("first")
    rendezvous.send(
        request("a", first),
        request("b", first),
        request("c", first),
        score("a", "gbt", 800, value=0.2, pol=first),
        score("a", "logreg", 300, pol=first),
        score("b", "logreg", 1200, pol=first),
    )
    rendezvous.send(score("b", "gbt", 900, value=0.3, pol=first), score("c", "gbt", 1300, value=0.4, pol=first))
    assert_answers(
        spark,
        rendezvous.advance(),
        [
            ("a", "gbt", 0.2, True, "preferred", at(800)),  # arrived first, though scored later than logreg
            ("b", "gbt", 0.3, True, "preferred", at(900)),  # the first that came in time, in a later batch
        ],
    )
    rendezvous.send(heartbeat(5000))
    assert_answers(
        spark,
        rendezvous.advance(),
        [
            ("a", "gbt", 0.2, True, "preferred", at(800)),
            ("b", "gbt", 0.3, True, "preferred", at(900)),
            ("c", "gbt", 0.4, False, "fallback", at(1500)),  # none in time: the first late one
        ],
    )


def test_best_waits_for_the_decision_point_and_takes_the_best_score_in_time_by_its_criterion(spark, rendezvous):
    confidence = policy("best", criterion="confidence")
    highest = policy("best", criterion="highest_score")
    rendezvous.send(
        request("confident", confidence),
        request("highest", highest),
        request("late", confidence),
        score("confident", "logreg", 100, value=0.6, pol=confidence),
        score("confident", "gbt", 900, value=0.1, pol=confidence),
        score("highest", "logreg", 100, value=0.6, pol=highest),
        score("highest", "gbt", 900, value=0.1, pol=highest),
        score("highest", "late-model", 1200, value=0.99, role="champion", pol=highest),  # best value, but late
        score("late", "logreg", 1100, value=0.55, pol=confidence),
        score("late", "gbt", 1200, value=0.95, pol=confidence),
    )
    assert rendezvous.advance().count() == 0  # best must see every score in time first
    rendezvous.send(heartbeat(5000))
    decision_point = at(DEADLINE_MS + GRACE_MS)
    assert_answers(
        spark,
        rendezvous.advance(),
        [
            ("confident", "gbt", 0.1, True, "preferred", decision_point),  # max(p, 1 - p): 0.9 beats 0.6
            ("highest", "logreg", 0.6, True, "preferred", decision_point),
            ("late", "gbt", 0.95, False, "fallback", decision_point),  # none in time: the best late one
        ],
    )


def test_rules_and_split_answer_by_the_preference_the_features_job_resolved(spark, rendezvous):
    grocery = policy("rules", preference=("challenger", "champion"), rule="small-grocery")
    exposed = policy("split", preference=("challenger", "champion"), arm="challenger")
    rendezvous.send(
        request("r", grocery),
        request("s", exposed),
        score("r", "logreg", 100, pol=grocery),
        score("r", "gbt", 400, value=0.3, pol=grocery),
        score("s", "logreg", 100, pol=exposed),
        score("s", "gbt", 1200, value=0.4, pol=exposed),
    )
    actual = rendezvous.advance()
    assert_answers(spark, actual, [("r", "gbt", 0.3, True, "preferred", at(400))])
    assert [(r.strategy, r.rule, r.arm) for r in actual.collect()] == [("rules", "small-grocery", None)]
    rendezvous.send(heartbeat(5000))
    actual = rendezvous.advance()
    assert_answers(
        spark, actual, [("r", "gbt", 0.3, True, "preferred", at(400)), ("s", "logreg", 0.9, True, "fallback", at(1500))]
    )
    assert {(r.request_id, r.strategy, r.arm) for r in actual.collect()} == {
        ("r", "rules", None),
        ("s", "split", "challenger"),
    }


def test_a_score_that_arrives_before_its_request_answers_it_all_the_same(spark, rendezvous):
    rendezvous.send(score("a", "logreg", 300))
    assert_answers(spark, rendezvous.advance(), [("a", "logreg", 0.9, True, "preferred", at(300))])
    rendezvous.send(request("a"), heartbeat(5000))
    assert_answers(spark, rendezvous.advance(), [("a", "logreg", 0.9, True, "preferred", at(300))])


def test_a_score_in_the_batch_that_passes_the_deadline_still_counts(spark, rendezvous):
    rendezvous.send(request("a"), heartbeat(1000))
    assert rendezvous.advance().count() == 0
    # The heartbeat in this batch moves the watermark past the decision point only after it.
    rendezvous.send(score("a", "gbt", 1000, value=0.2), heartbeat(5000))
    assert_answers(spark, rendezvous.advance(), [("a", "gbt", 0.2, True, "fallback", at(1500))])


def test_a_request_no_model_scored_gets_the_default_and_only_after_its_decision_point(spark, rendezvous):
    rendezvous.send(request("a"), heartbeat(2400))  # watermark: 2.4 s - transit = 1.4 s < 1.5 s
    assert rendezvous.advance().count() == 0
    rendezvous.send(heartbeat(2600))
    assert_answers(spark, rendezvous.advance(), [("a", None, -1.0, None, "default", at(1500))])


@pytest.mark.parametrize("rendezvous", [3000], indirect=True)
def test_a_deadline_shorter_than_the_lateness_still_gets_its_answer_after_a_heartbeat_passed_it(spark, rendezvous):
    """With 3 s of lateness, a request may reach the rendezvous after a heartbeat 3 s younger than
    it has moved the watermark to 2 s (its time - transit): past a decision point of 100 ms +
    grace. It waits the lateness instead; what is in time, or within the grace, still goes by its
    own 100 ms."""
    short = policy(deadline_ms=100)
    rendezvous.send(heartbeat(3000))
    assert rendezvous.advance().count() == 0
    rendezvous.send(
        request("a", short),
        request("b", short),
        request("c", short),
        score("b", "logreg", 90, pol=short),
        score("c", "logreg", 400, pol=short),
    )
    assert_answers(spark, rendezvous.advance(), [("b", "logreg", 0.9, True, "preferred", at(90))])
    rendezvous.send(heartbeat(4100))  # the watermark passes 3 s, their decision point
    assert_answers(
        spark,
        rendezvous.advance(),
        [
            ("b", "logreg", 0.9, True, "preferred", at(90)),
            ("a", None, -1.0, None, "default", at(3000)),
            ("c", "logreg", 0.9, False, "fallback", at(3000)),
        ],
    )


def test_duplicate_scores_of_one_model_answer_once_with_the_first_to_arrive(spark, rendezvous):
    rendezvous.send(
        request("a"),
        request("b"),
        score("a", "logreg", 300, value=0.7),
        score("a", "logreg", 300, value=0.7),
        score("b", "gbt", 600, value=0.2),
        score("b", "gbt", 650, value=0.25),
    )
    rendezvous.send(score("a", "logreg", 400, value=0.8))  # a replay, re-scored later
    assert_answers(spark, rendezvous.advance(), [("a", "logreg", 0.7, True, "preferred", at(300))])
    rendezvous.send(score("b", "gbt", 500, value=0.3), heartbeat(5000))
    assert_answers(
        spark,
        rendezvous.advance(),
        [("a", "logreg", 0.7, True, "preferred", at(300)), ("b", "gbt", 0.2, True, "fallback", at(1500))],
    )


def test_a_score_that_arrives_after_the_decision_never_changes_it(spark, rendezvous):
    rendezvous.send(request("a"), score("a", "gbt", 700, value=0.2), heartbeat(5000))
    decided = [("a", "gbt", 0.2, True, "fallback", at(1500))]
    assert_answers(spark, rendezvous.advance(), decided)
    # The champion's score in time, but later than the transit allows: the request is decided.
    rendezvous.send(score("a", "logreg", 900), heartbeat(9000))
    assert_answers(spark, rendezvous.advance(), decided)


def test_a_request_seen_twice_is_answered_once(spark, rendezvous):
    rendezvous.send(request("a"), request("b"), score("a", "logreg", 200))
    rendezvous.send(request("a"), request("b"))
    rendezvous.send(heartbeat(5000))
    assert_answers(
        spark,
        rendezvous.advance(),
        [("a", "logreg", 0.9, True, "preferred", at(200)), ("b", None, -1.0, None, "default", at(1500))],
    )


def test_a_model_unknown_to_the_policy_is_never_the_answer(spark, rendezvous):
    by_name = policy(preference=("logreg",))
    rendezvous.send(request("a", by_name), score("a", "gbt", 100, value=0.2, pol=by_name), heartbeat(5000))
    assert_answers(spark, rendezvous.advance(), [("a", None, -1.0, None, "default", at(1500))])


def test_a_micro_batch_reads_its_source_once_for_both_kinds_of_record_and_both_paths(spark, rendezvous):
    """One scan parses requests and scores alike, and both stateful operators read one shared
    shuffle; were either planned twice, each micro-batch would read and parse its records twice
    (a throughput regression, not a wrong answer)."""
    rendezvous.send(request("a"), score("a", "logreg", 400))
    rendezvous.advance()
    # Event times the watermark has seen already: no batch without data follows this one.
    rendezvous.send(request("b"), score("b", "logreg", 400), score("b", "gbt", 300))
    rendezvous.advance()
    plan = rendezvous.plan()
    assert plan.count("ReusedExchange") == 1, plan
    assert plan.count("FileScan") == 1, plan

"""A data set that is not the demo's, brought by its feature spec alone: ride requests whose models
predict a trip's minutes. The whole pipeline runs on it with no code change; then `rdv forget`
removes one rider from every table, older versions included.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from comparison.backfill import backfill_labels
from features.personal_key import KEY_VARIABLE
from rdv import commands
from rdv.config import PipelineConfig, load_config
from rdv.operations import runner
from rdv.operations.forget import TABLES
from tests.e2e.helpers import POLL_S, wait_for_requests
from tests.fixtures.registry import register_code_model
from tests.helpers import REPO, write_conf
from tests.integration.kafka_io import produce

SPEC = REPO / "tests" / "fixtures" / "specs" / "rides.yaml"
FEATURES = ("log_km", "same_zone", "rush_hour", "passengers", "large_vehicle")
RIDERS = ("rider-1", "rider-2", "rider-3")
RIDES = 30
DEADLINE_MS = 20_000  # one application runs every job on two cores: scores take seconds
PHONE = "+44 7700 900123"  # `personal: drop`: must reach no table
FORGOTTEN = "rider-1"
# Bad records, each with the reason the features job must give it; three of them (the vehicle, the
# version and the message that is not JSON) are the forgotten rider's.
BAD = {
    "rides-bad-vehicle": "not_allowed:vehicle",
    "rides-bad-zone": "below_min:pickup_zone",
    "rides-bad-rider": "missing:rider_id",
    "rides-bad-version": "unknown_version:schema_version",
}
NOT_JSON = '{"rider_id": "rider-1", "trip_km": '


@dataclass
class Rides:
    config: PipelineConfig
    archive: pd.DataFrame
    scores: pd.DataFrame
    results: pd.DataFrame
    quarantine: pd.DataFrame
    data_quality: pd.DataFrame
    forget_while_running: tuple[int, str]  # `rdv forget`'s exit status and message with the jobs running


def _ride(n: int, **changes) -> str:
    ride = {
        "request_id": f"rides-{n}",
        "event_time": datetime.now(UTC).isoformat(),
        "schema_version": 2,
        "rider_id": RIDERS[n % len(RIDERS)],
        "phone": PHONE,
        "pickup_zone": 1 + n % 5,
        "dropoff_zone": 1 + n % 3,
        "trip_km": 0.5 + n,
        "passengers": 1 + n % 4,
        "vehicle": ("standard", "xl", "lux")[n % 3],
    }
    return json.dumps({**ride, **changes})


def _bad_records() -> list[str]:
    return [
        _ride(0, request_id="rides-bad-vehicle", vehicle="bus"),
        _ride(1, request_id="rides-bad-zone", pickup_zone=0),
        json.dumps({k: v for k, v in json.loads(_ride(2, request_id="rides-bad-rider")).items() if k != "rider_id"}),
        _ride(3, request_id="rides-bad-version", schema_version=1),
        NOT_JSON,
    ]


def _register_models(tracking_uri: str) -> None:
    champion = register_code_model(tracking_uri, "trips", "trip_minutes.py", {"per_km": 2.0}, features=FEATURES)
    challenger = register_code_model(tracking_uri, "trips", "trip_minutes.py", {"per_km": 1.6}, features=FEATURES)
    client = MlflowClient(tracking_uri, tracking_uri)
    client.set_registered_model_alias("trips", "champion", champion)
    client.set_registered_model_alias("trips", "challenger", challenger)


def _rides_config(root: Path, registry: str) -> PipelineConfig:
    conf = write_conf(
        root,
        models=(),
        spec=SPEC,
        profile_override="cluster",
        mlflow={"tracking_uri": registry},
        policy={
            "strategy": "rules",
            "deadline_ms": DEADLINE_MS,
            "rules": [
                {"name": "short-trips", "when": {"trip_km": {"lt": 2}}, "preference": ["challenger", "champion"]}
            ],
        },
        rendezvous={"max_deadline_ms": DEADLINE_MS, "grace": "2 seconds"},
        spark={"quality_trigger": "5 seconds"},
    )
    for role in ("champion", "challenger"):
        (conf / "models" / f"{role}.yaml").write_text(f"uri: models:/trips@{role}\noutput: regression\n")
    return load_config(conf)


def _table(spark, config: PipelineConfig, name: str) -> pd.DataFrame:
    return spark.read.format("delta").load(config.table(name)).toPandas()


@pytest.fixture(scope="module")
def rides(spark, broker, registry, tmp_path_factory):
    _register_models(registry)
    config = _rides_config(tmp_path_factory.mktemp("rides"), registry)
    try:
        runner.up(config, sorted(config.models))
        # Python workers start and models load in the first micro-batches, past any deadline on two cores.
        _send_and_wait(spark, config, "warm-up-", [_ride(n, request_id=f"warm-up-{n}") for n in range(3)], 3)
        _send_and_wait(spark, config, "rides-", [_ride(n) for n in range(RIDES)] + _bad_records(), RIDES)
        deadline = time.monotonic() + 120
        while (quarantined := len(_table(spark, config, "quarantine"))) < len(BAD) + 1:
            assert time.monotonic() < deadline, f"rides: {quarantined} of {len(BAD) + 1} bad records in quarantine"
            time.sleep(POLL_S)
        while (
            validated := _table(spark, config, "data_quality").drop_duplicates("batch_id")["rows"].sum()
        ) < RIDES + 3:
            assert time.monotonic() < deadline, f"rides: {validated} of {RIDES + 3} feature records validated"
            time.sleep(POLL_S)
        message = io.StringIO()
        with contextlib.redirect_stderr(message):
            status = commands.main(["--conf", str(config.conf_dir), "forget", FORGOTTEN])
        forget_while_running = (status, message.getvalue())
    finally:
        runner.down(config)
    yield Rides(
        config,
        *[_table(spark, config, name) for name in ("archive", "scores", "results", "quarantine", "data_quality")],
        forget_while_running,
    )


def _send_and_wait(spark, config: PipelineConfig, prefix: str, messages: list[str], requests: int) -> None:
    produce(config.kafka.bootstrap_servers, config.kafka.topics.raw.name, messages)
    wait_for_requests(spark, config, prefix, requests, ["champion", "challenger"])


def _pseudonym(rider: str) -> str:
    return hmac.new(os.environ[KEY_VARIABLE].encode(), rider.encode(), hashlib.sha256).hexdigest()


def _rides(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the rides sent (not of the warm-up's)."""
    return rows[rows["request_id"].str.startswith("rides-")]


def test_a_second_data_set_runs_end_to_end_from_its_spec_alone(rides):
    archive = _rides(rides.archive).set_index("request_id")
    assert sorted(archive.index) == sorted(f"rides-{n}" for n in range(RIDES))
    assert (archive["schema_version"] == 2).all()
    features = pd.DataFrame([json.loads(m)["features"] for m in archive["message"]], index=archive.index)
    assert list(features.columns) == list(FEATURES)
    assert features.loc["rides-4", "log_km"] == pytest.approx(math.log1p(4.5))  # trip_km 0.5 + 4
    assert features.loc["rides-4", "large_vehicle"] == 1.0 and features.loc["rides-3", "large_vehicle"] == 0.0
    # Personal data: the rider is a keyed hash everywhere, the phone number is nowhere.
    assert set(archive["subject"]) == {_pseudonym(r) for r in RIDERS}
    assert not archive["message"].str.contains("rider-").any()
    assert not archive["message"].str.contains("7700").any()

    scores = _rides(rides.scores)
    for model, per_km in (("champion", 2.0), ("challenger", 1.6)):
        mine = scores[scores["model"] == model].set_index("request_id").reindex(archive.index)
        km = features["log_km"].map(math.expm1)
        expected = 3.0 + per_km * km + 4.0 * features["rush_hour"] + 1.5 * features["large_vehicle"]
        assert mine["error"].isna().all() and mine["label"].isna().all()
        pd.testing.assert_series_equal(mine["score"], expected, check_names=False, rtol=1e-9)
    assert set(scores["subject"]) == {_pseudonym(r) for r in RIDERS}

    results = _rides(rides.results).set_index("request_id")
    assert results.index.is_unique and sorted(results.index) == sorted(archive.index)
    short = ["rides-0", "rides-1"]  # trip_km under 2: the rule makes the challenger the preferred model
    assert (results.loc[short, "rule"] == "short-trips").all() and results.drop(index=short)["rule"].isna().all()
    assert results["model"].notna().all(), results["reason"].value_counts()  # none without a model's score
    # Every answer, whatever the machine's speed, is the one its preference and its scores' timing
    # make: the first preference in time answers as preferred; else the other in time, as fallback.
    # A short ride answered by the champion as preferred would mean the rule was not applied.
    in_time = scores.set_index(["request_id", "model"])["in_time"]
    for request_id, answer in results.iterrows():
        preference = ("challenger", "champion") if request_id in short else ("champion", "challenger")
        timely = [model for model in preference if in_time.get((request_id, model), False)]
        if timely:
            expected = (timely[0], "preferred" if timely[0] == preference[0] else "fallback")
            assert (answer["model"], answer["reason"]) == expected, (request_id, answer.to_dict())
        else:
            assert answer["reason"] == "fallback", (request_id, answer.to_dict())  # a late score within the grace

    reasons = rides.quarantine.set_index(
        rides.quarantine["raw"].map(lambda raw: raw.startswith('{"request_id"') and json.loads(raw)["request_id"])
    )
    assert {key: reasons.loc[key, "reason"] for key in BAD} == BAD
    assert rides.quarantine.loc[rides.quarantine["raw"] == NOT_JSON, "reason"].tolist() == ["not_json"]

    # Great Expectations validated every archived record against the suite made from this spec.
    quality = rides.data_quality
    assert set(quality["suite"]) == {"rdv-features-v2"} and quality["success"].all()
    assert set(quality["column"]) == set(FEATURES)
    assert ("expect_column_values_to_be_between", "log_km") in set(zip(quality["expectation"], quality["column"]))
    assert all(Path(document).is_file() for document in quality["document"])


def _versions(spark, path: str) -> list[int]:
    return [row["version"] for row in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()]


def test_rdv_forget_leaves_nothing_of_the_subject_in_any_table_or_older_version(rides, spark, tmp_path):
    config, subject = rides.config, _pseudonym(FORGOTTEN)
    # With the pipeline running, it refused and named what to stop; the tables below were read
    # after it, with the subject's rows still in them.
    status, message = rides.forget_while_running
    assert status == 2 and "jobs are running (pipeline, recording)" in message, message
    assert "stop them with `rdv down`" in message, message
    mine = set(rides.archive.loc[rides.archive["subject"] == subject, "request_id"])
    assert len(mine) == RIDES // len(RIDERS) + 1  # and one of the warm-up's
    # Labels arrive later, keyed by request id: the trip's real minutes, for every request.
    minutes = tmp_path / "minutes.csv"
    minutes.write_text("request_id,label\n" + "".join(f"{r},10.0\n" for r in rides.archive["request_id"]))
    assert backfill_labels(spark, config, str(minutes)).inserted == len(rides.archive)

    forgetting = subprocess.run(
        [sys.executable, "-m", "rdv.commands", "--conf", str(config.conf_dir), "forget", FORGOTTEN, "--vacuum"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert forgetting.returncode == 0, forgetting.stderr[-3000:]
    report = forgetting.stdout
    mine_in_quarantine = 3  # the bad vehicle, the bad version and the message that is not JSON
    for line in (
        f"{len(mine)} requests of this subject",
        f"archive     {len(mine)} rows deleted",
        f"scores      {2 * len(mine)} rows deleted",
        f"results     {len(mine)} rows deleted",
        f"quarantine  {mine_in_quarantine} rows deleted",
        f"labels      {len(mine)} rows deleted",
        "vacuumed: no older table version holds the rows any more",
    ):
        assert line in report, report

    for name in TABLES:
        path = config.table(name)
        # Every version still readable holds none of the subject's rows; the others' are untouched.
        for version in _versions(spark, path):
            try:
                rows = spark.read.format("delta").option("versionAsOf", version).load(path).toPandas()
            except Exception as error:  # noqa: BLE001 - a version whose files the vacuum removed
                assert "FILE_NOT_EXIST" in str(error) or "FileNotFound" in str(error), error
                continue
            _assert_none_of_theirs(rows, subject, mine, f"{name} version {version}")
        # Every file left: data files and the log's checkpoints read as Parquet, the rest as bytes.
        for file in (f for f in Path(path).rglob("*") if f.is_file()):
            if file.suffix == ".parquet":
                _assert_none_of_theirs(spark.read.parquet(str(file)).toPandas(), subject, mine, str(file))
            else:
                content = file.read_bytes()
                assert FORGOTTEN.encode() not in content and subject.encode() not in content, file
    others = spark.read.format("delta").load(config.table("archive")).toPandas()
    assert len(others) == len(rides.archive) - len(mine) and set(others["subject"]) == {
        _pseudonym(r) for r in RIDERS[1:]
    }


def _assert_none_of_theirs(rows: pd.DataFrame, subject: str, request_ids: set[str], where: str) -> None:
    if rows.empty:
        return
    if "request_id" in rows:
        assert not rows["request_id"].isin(request_ids).any(), where
    if "subject" in rows:
        assert not (rows["subject"] == subject).any(), where
    text = rows.astype(str).apply(" ".join, axis=1)
    assert not text.str.contains(FORGOTTEN, regex=False).any(), where
    assert not text.str.contains(subject, regex=False).any(), where

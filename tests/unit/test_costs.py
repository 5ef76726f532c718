"""Each model's CPU per 1,000 requests from the samples in `costs`: spread over the windows a sample
overlaps, and over an evaluation period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from comparison.costs import MAX_WINDOWS, cpu_per_1000, windowed_costs
from models.cost import COST_ROW, cost_rows

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
WINDOW_MS = 10_000


def sample(model: str, start_s: float, end_s: float, requests: int, cpu_s: float, by: str = "tasks") -> tuple:
    return (model, "fraud", "1", T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s), requests, cpu_s, by)


def test_a_sample_is_spread_over_the_windows_it_overlaps_by_its_share_of_each(spark):
    samples = [
        sample("champion", 5, 25, 200, 4.0),  # half a window, a window, half a window
        sample("costly", 0, 10, 100, 9.0),
        sample("costly", 10, 20, 50, 1.0, by="processes"),
    ]
    got = windowed_costs(spark.createDataFrame(samples, COST_ROW), WINDOW_MS).select(
        "window_start", "model", "cost_cpu_s", "cost_requests", "cost_measured_by", "cpu_s_per_1000_requests"
    )
    schema = "window_start timestamp, model string, cost_cpu_s double, cost_requests double, "
    schema += "cost_measured_by string, cpu_s_per_1000_requests double"
    at = lambda s: T0.replace(tzinfo=None) + timedelta(seconds=s)  # noqa: E731 - the session's time zone is UTC
    expected = spark.createDataFrame(
        [
            (at(0), "champion", 1.0, 50.0, "tasks", 20.0),
            (at(10), "champion", 2.0, 100.0, "tasks", 20.0),
            (at(20), "champion", 1.0, 50.0, "tasks", 20.0),
            (at(0), "costly", 9.0, 100.0, "tasks", 90.0),
            (at(10), "costly", 1.0, 50.0, "processes", 20.0),
        ],
        schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_sample_over_idle_time_is_spread_over_its_last_windows_only_and_keeps_its_rate(spark):
    days = 3 * 24 * 3600
    got = windowed_costs(spark.createDataFrame([sample("champion", 0, days, 1000, 50.0)], COST_ROW), WINDOW_MS)
    figures = got.agg(F.count("*"), F.sum("cost_cpu_s"), F.min("cpu_s_per_1000_requests"), F.max("window_start"))
    windows, cpu_s, lowest, last = figures.first()
    assert windows == MAX_WINDOWS
    assert cpu_s == pytest.approx(50.0)
    assert lowest == pytest.approx(50.0)
    assert last == (T0 + timedelta(seconds=days - 10)).replace(tzinfo=None)


def test_cpu_per_1000_over_a_period_takes_the_share_of_each_sample_inside_it():
    samples = pd.DataFrame(
        [sample("champion", 0, 20, 100, 2.0), sample("champion", 20, 40, 100, 6.0), sample("costly", 0, 40, 10, 9.0)],
        columns=COST_ROW.fieldNames(),
    )
    for column in ("measured_from", "measured_to"):
        samples[column] = samples[column].dt.tz_localize(None)
    naive = T0.replace(tzinfo=None)
    # The whole of the first sample and half of the second: 2 + 3 CPU s over 100 + 50 requests.
    assert cpu_per_1000(samples, "champion", naive, naive + timedelta(seconds=30)) == pytest.approx(5 / 150 * 1000)
    # The evidence's times come with their zone.
    assert cpu_per_1000(samples, "champion", T0, T0 + timedelta(seconds=30)) == pytest.approx(5 / 150 * 1000)
    assert cpu_per_1000(samples, "champion", None, None) == pytest.approx(8 / 200 * 1000)
    assert cpu_per_1000(samples, "costly", None, None) == pytest.approx(900.0)
    assert cpu_per_1000(samples, "canary", None, None) is None
    assert cpu_per_1000(pd.DataFrame(columns=COST_ROW.fieldNames()), "champion", T0, T0) is None  # no table yet
    assert cpu_per_1000(samples, "champion", naive + timedelta(hours=1), naive + timedelta(hours=2)) is None


def test_a_sample_on_rdv_costs_becomes_a_row_of_the_table_with_its_date(spark):
    message = (
        '{"model": "champion", "registered_model": "fraud", "model_version": "3", "measured_from": '
        '"2026-03-01T23:59:50.000Z", "measured_to": "2026-03-02T00:00:00.000Z", "requests": 120, '
        '"cpu_s": 0.25, "measured_by": "processes"}'
    )
    got = cost_rows(spark.createDataFrame([(bytearray(message.encode()),)], "value binary"))
    at = T0.replace(tzinfo=None)
    expected = spark.createDataFrame(
        [
            (
                "champion",
                "fraud",
                "3",
                at + timedelta(hours=11, minutes=59, seconds=50),
                at + timedelta(hours=12),
                120,
                0.25,
                "processes",
                (at + timedelta(hours=11)).date(),
            )
        ],
        COST_ROW.simpleString().removeprefix("struct<").removesuffix(">").replace(":", " ") + ", measured_date date",
    )
    assert_df_equality(got, expected, ignore_nullable=True)

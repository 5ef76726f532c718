"""A synthetic card-transaction fraud problem with a drift point, for the demo, the tests and training.

Before the drift, fraud is driven by unusual amounts abroad; after it, by many card-not-present
transactions in risky categories. The time of day plays no part: a replay stamps each event with
the time it is sent, so a generated hour would not survive it. The population moves too: after
the drift, more transactions are online, card-not-present and abroad, which is what the drift
monitor sees before any label arrives. A model trained before the drift (the demo's champion)
degrades after it; one that has seen the new pattern (the challenger) holds up better.
Generation is vectorised and seeded, so a run is reproducible.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "US", "GB", "PL")
# Merchant categories with their prior fraud risk; conf/features.yaml's category_risk knows them too.
CATEGORY_RISK = {
    "grocery": 0.05,
    "fuel": 0.15,
    "restaurant": 0.1,
    "electronics": 0.6,
    "travel": 0.5,
    "online": 0.7,
    "other": 0.3,
}
_CATEGORIES = tuple(CATEGORY_RISK)
# How often each category occurs, before and after the drift (same order as CATEGORY_RISK).
_CATEGORY_SHARE_BEFORE = np.full(len(_CATEGORIES), 1 / len(_CATEGORIES))
_CATEGORY_SHARE_AFTER = np.array([0.1, 0.08, 0.1, 0.2, 0.15, 0.3, 0.07])


def generate_events(
    n: int, seed: int = 7, drift_at: float = 0.5, start: datetime | None = None, spacing_ms: float = 20.0
) -> pd.DataFrame:
    """n raw events (the rdv.raw fields) plus their ground truth is_fraud; events at index
    drift_at * n and later follow the drifted pattern."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    drifted = np.arange(n) >= int(drift_at * n)
    home = rng.choice(COUNTRIES, n)
    abroad = rng.random(n) < np.where(drifted, 0.3, 0.12)
    country = np.where(abroad, rng.choice(COUNTRIES, n), home)
    avg_amount = rng.lognormal(3.5, 0.6, n)
    unusual = rng.random(n) < 0.1
    amount = np.round(avg_amount * np.where(unusual, rng.lognormal(1.2, 0.5, n), rng.lognormal(0, 0.4, n)), 2)
    shares = np.where(drifted[:, None], _CATEGORY_SHARE_AFTER, _CATEGORY_SHARE_BEFORE).cumsum(axis=1)
    category = np.array(_CATEGORIES)[np.minimum((rng.random(n)[:, None] > shares).sum(axis=1), len(_CATEGORIES) - 1)]
    card_present = rng.random(n) < np.where(drifted, 0.35, 0.6)
    txn_count = rng.poisson(3, n) + np.where(rng.random(n) < 0.08, rng.poisson(10, n), 0)
    distance = np.round(rng.exponential(15, n) + np.where(country != home, 800, 0), 1)
    times = [start + timedelta(milliseconds=i * spacing_ms) for i in range(n)]
    hour = np.array([t.hour for t in times])
    # Spread events over the day so that is_night varies even in a short run.
    hour = (hour + rng.integers(0, 24, n)) % 24
    times = [t.replace(hour=int(h)) for t, h in zip(times, hour)]

    risk = np.array([CATEGORY_RISK[c] for c in category])
    ratio = amount / np.maximum(avg_amount, 1.0)
    before = -5.0 + 1.1 * np.log1p(ratio) * 2 + 1.8 * (country != home)
    after = -5.2 + 3.0 * risk + 0.25 * txn_count + 1.6 * (~card_present)
    logit = np.where(drifted, after, before)
    is_fraud = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))

    return pd.DataFrame(
        {
            "request_id": [f"demo-{seed}-{i:08d}" for i in range(n)],
            "event_time": [t.isoformat(timespec="milliseconds").replace("+00:00", "Z") for t in times],
            "card_id": [f"card-{c:06d}" for c in rng.integers(0, 50_000, n)],
            "amount": amount,
            "merchant_category": category,
            "country": country,
            "home_country": home,
            "distance_km": distance,
            "card_present": card_present,
            "txn_count_24h": txn_count.astype(int),
            "avg_amount_30d": np.round(avg_amount, 2),
            "is_fraud": is_fraud.astype(int),
        }
    )


def raw_json(events: pd.DataFrame) -> list[str]:
    """The events as rdv.raw messages (ground truth left out: it arrives later, as a label)."""
    records = events.drop(columns=["is_fraud"]).to_dict(orient="records")
    return [json.dumps(r, default=_plain) for r in records]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


# Raw messages that must end in quarantine, as the demo sends them now and then (every reason
# there is: docs/data-quality.md).
BAD_MESSAGES = (
    ("not_json", "this is not json"),
    ("not_object", "[1, 2, 3]"),
    (
        "missing:amount",
        '{"event_time": "2026-01-01T00:00:00Z", "card_id": "c", "merchant_category": "grocery",'
        ' "country": "DE", "home_country": "DE", "distance_km": 1.0, "card_present": true, "txn_count_24h": 1,'
        ' "avg_amount_30d": 10.0}',
    ),
    (
        "wrong_type:amount",
        '{"event_time": "2026-01-01T00:00:00Z", "card_id": "c", "amount": "lots",'
        ' "merchant_category": "grocery", "country": "DE", "home_country": "DE", "distance_km": 1.0,'
        ' "card_present": true, "txn_count_24h": 1, "avg_amount_30d": 10.0}',
    ),
)

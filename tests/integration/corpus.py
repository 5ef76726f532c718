"""A corpus of raw records with every way a record can be bad, and how many of each must come out."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from rdv.demo.generator import generate_events, raw_json

_DROP = object()  # a field left out of a variant


def _iso(time: datetime) -> str:
    return time.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def corpus(good_count: int, seed: int = 5) -> tuple[list[str], Counter]:
    """(messages for rdv.raw, expected count per outcome): None counts the feature records, a
    reason the records quarantined with it. Event times are now, as a live producer stamps them;
    send the messages at once."""
    now = datetime.now(UTC)
    good = []
    for i, message in enumerate(raw_json(generate_events(good_count, seed=seed))):
        record = json.loads(message)
        good.append({**record, "request_id": f"good-{seed}-{i}", "event_time": _iso(now)})
    base = good[0]

    def variant(tag: str, **changes) -> str:
        record = {**base, "request_id": f"bad-{tag}", **changes}
        return json.dumps({k: v for k, v in record.items() if v is not _DROP})

    bad = [
        ("not_json", "this is not json"),
        ("not_json", '{"request_id": "half'),
        ("not_object", "[1, 2, 3]"),
        ("not_object", '"just a string"'),
        ("too_large", variant("too-large", card_id="x" * 70_000)),
        ("unknown_version:schema_version", variant("version-9", schema_version=9)),
        ("unknown_version:schema_version", variant("version-text", schema_version="v1")),
        ("missing:amount", variant("missing", amount=_DROP)),
        ("missing:event_time", variant("no-time", event_time=_DROP)),
        ("wrong_type:amount", variant("wrong-type", amount="lots")),
        ("wrong_type:card_present", variant("wrong-bool", card_present="maybe")),
        ("below_min:amount", variant("negative", amount=-12.5)),
        ("above_max:amount", variant("huge", amount=5e6)),
        ("no_match:country", variant("country", country="Germany")),
        ("not_finite:amount", variant("nan", amount=float("nan"))),
        ("not_finite:distance_km", variant("infinity", distance_km=float("inf"))),
        ("too_new:event_time", variant("future", event_time=_iso(now + timedelta(hours=1)))),
        ("too_old:event_time", variant("late", event_time=_iso(now - timedelta(minutes=10)))),
        ("bad_policy:deadline_ms", variant("policy", policy={"deadline_ms": "soon"})),
        # A producer's retry: the same event again, right after the first.
        ("duplicate:request_id", json.dumps(good[1])),
        ("duplicate:request_id", json.dumps(good[2])),
    ]
    messages = [json.dumps(record) for record in good] + [message for _, message in bad]
    expected = Counter({None: len(good)}) + Counter(reason for reason, _ in bad)
    return messages, expected

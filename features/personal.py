"""Personal data in raw events, protected before anything is written: a keyed hash, or nothing.

A raw field the spec marks `personal: hash` reaches the features as HMAC-SHA256 of its value under
a secret key, as hex: the same value always gives the same pseudonym, so a feature or a join can
still use it, but without the key nobody can link a pseudonym back to the value. `personal: drop`
leaves nothing of the field. The key comes from the environment (features/personal_key.py).

The hash is Spark SQL (sha2 twice, as HMAC is defined), so no Python runs per record.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column
from pyspark.sql import functions as F

from features.personal_key import MissingKey
from rdv.feature_spec import FeatureSpec

_BLOCK = 64  # SHA-256's block size in bytes


def hmac_sha256(value: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column under key, as 64 hex characters (null for null)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner_pad = bytearray(b ^ 0x36 for b in key)
    outer_pad = bytearray(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), value.cast("binary")), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def protected(typed: Column, spec: FeatureSpec, key: bytes | None) -> Column:
    """The typed raw fields (a struct column) with personal ones hashed or dropped, as the spec says."""
    fields = []
    for name, field in spec.raw.items():
        value = typed[name]
        if field.personal == "hash":
            if key is None:
                raise MissingKey(f"raw.{name} is `personal: hash` and no key was given")
            value = hmac_sha256(value, key)
        elif field.personal == "drop":
            value = F.lit(None).cast(field.type)
        fields.append(value.alias(name))
    return F.struct(*fields)

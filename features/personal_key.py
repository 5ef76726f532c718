"""The secret key personal data is hashed under (features/personal.py): where it comes from.

It comes from the environment variable RDV_PERSONAL_DATA_KEY, never from a file, so the repository
and the tables never hold it. Apart from the hashing, which is Spark SQL, so that a command that
only checks or sets the key (every `rdv` command does) does not load Spark.
"""

from __future__ import annotations

import logging
import os
import secrets

from rdv.feature_spec import FeatureSpec

log = logging.getLogger(__name__)

KEY_VARIABLE = "RDV_PERSONAL_DATA_KEY"


class MissingKey(RuntimeError):
    """A spec asks to hash personal data and no key is set."""


def personal_data_key(spec: FeatureSpec, spec_file) -> bytes | None:
    """The key from the environment; an error naming the fields when the spec needs one and none is set."""
    hashed = [name for name, field in spec.raw.items() if field.personal == "hash"]
    key = os.environ.get(KEY_VARIABLE, "")
    if hashed and not key:
        raise MissingKey(
            f"{spec_file}: {', '.join(hashed)} marked `personal: hash`, but {KEY_VARIABLE} is not set: "
            "export a secret of your own (e.g. `openssl rand -hex 32`) before starting the jobs"
        )
    return key.encode() if key else None


def ensure_session_key() -> None:
    """For a local run only: without a key set, a random one for this command and the jobs it
    starts, so the demo runs on a fresh machine; pseudonyms then differ from run to run."""
    if not os.environ.get(KEY_VARIABLE):
        os.environ[KEY_VARIABLE] = secrets.token_hex(32)
        log.warning(
            "%s is not set: personal data is hashed under a random key for this run only; "
            "set it to keep pseudonyms stable across runs",
            KEY_VARIABLE,
        )

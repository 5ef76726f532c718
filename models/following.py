"""A model job's model, kept on the version its URI points at now.

A job that follows an alias (models:/fraud@champion) asks the registry which version the alias
names every `mlflow.alias_check`, and at once when `rdv promote` has touched the marker file
var/run/aliases-moved (a stat before each micro-batch costs nothing; a registry query did, on every
batch of every model job). When the alias has moved, the job downloads and ships the new version
and scores the next micro-batch with it, without a restart. So a promotion through `rdv promote`
applies from the next micro-batch of a job whose driver sees the same var/ (every local run); one
made in the registry otherwise applies within alias_check. A version that does
not fit the job's config (it needs a feature the config does not give it) is refused, loudly,
and the job keeps scoring with the version it has, rather than failing every batch after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException

from models.registry import ModelNotFound, ResolvedModel, clear_downloads, current_version, follows_alias, resolve_model
from rdv.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """The version a job scores with now and the feature columns it gives that version."""

    model: ResolvedModel
    columns: list[str]


# Checks a downloaded version against the job's config and ships it to the executors; returns
# the columns to score it with, or raises ConfigError when the version does not fit.
Prepare = Callable[[ResolvedModel], list[str]]


def announce_alias_change(marker: Path) -> None:
    """Tell the running model jobs that an alias moved: they ask the registry before their next
    micro-batch instead of at their next alias_check."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(time.time_ns()))


def _stamp(marker: Path) -> int | None:
    try:
        return marker.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class ModelFollower:
    def __init__(
        self,
        model: ModelConfig,
        tracking_uri: str,
        download_root: Path,
        prepare: Prepare,
        check_every_s: float,
        marker: Path,
    ):
        self._config = model
        self._tracking_uri = tracking_uri
        self._download_root = download_root
        self._prepare = prepare
        self._refused: str | None = None
        self._check_every_s, self._marker = check_every_s, marker
        self._checked_at, self._marker_seen = time.monotonic(), _stamp(marker)
        clear_downloads(model.name, download_root)
        resolved = resolve_model(model, tracking_uri, download_root)
        self.serving = Serving(resolved, prepare(resolved))  # at start, a misfit fails the job

    def refresh(self) -> Serving:
        """The version to score the next micro-batch with: the alias's current one if it fits,
        asked of the registry when alias_check has passed or the marker changed."""
        current = self.serving.model
        if not follows_alias(self._config.uri):
            return self.serving
        now, stamp = time.monotonic(), _stamp(self._marker)
        if stamp == self._marker_seen and now - self._checked_at < self._check_every_s:
            return self.serving
        self._checked_at, self._marker_seen = now, stamp
        try:
            version = current_version(self._config.uri, self._tracking_uri)
        except (ModelNotFound, MlflowException) as error:
            log.warning(
                "%s: cannot resolve %s (%s); scoring with version %s",
                current.name,
                self._config.uri,
                error,
                current.version,
            )
            return self.serving
        if version in (current.version, self._refused):
            return self.serving
        try:
            resolved = resolve_model(self._config, self._tracking_uri, self._download_root)
            columns = self._prepare(resolved)
        except (ConfigError, ModelNotFound, MlflowException) as error:
            self._refused = version
            log.error(
                "%s: refusing version %s of %s and scoring with version %s: %s",
                current.name,
                version,
                self._config.uri,
                current.version,
                error,
            )
            return self.serving
        log.info(
            "%s: %s moved from version %s to %s; scoring with %s from this micro-batch on",
            current.name,
            self._config.uri,
            current.version,
            resolved.version,
            resolved.version,
        )
        self.serving = Serving(resolved, columns)
        return self.serving

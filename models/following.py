"""A model job's model, kept on the version its URI points at now.

A job that follows an alias (models:/fraud@champion) asks the registry before every micro-batch
which version the alias names; when it has moved (`rdv promote`), the job downloads and ships
the new version and scores the next micro-batch with it, without a restart. A version that does
not fit the job's config (it needs a feature the config does not give it) is refused, loudly,
and the job keeps scoring with the version it has, rather than failing every batch after.
"""
from __future__ import annotations

import logging
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


class ModelFollower:
    def __init__(self, model: ModelConfig, tracking_uri: str, download_root: Path, prepare: Prepare):
        self._config = model
        self._tracking_uri = tracking_uri
        self._download_root = download_root
        self._prepare = prepare
        self._refused: str | None = None
        clear_downloads(model.name, download_root)
        resolved = resolve_model(model, tracking_uri, download_root)
        self.serving = Serving(resolved, prepare(resolved))  # at start, a misfit fails the job

    def refresh(self) -> Serving:
        """The version to score the next micro-batch with: the alias's current one if it fits."""
        current = self.serving.model
        if not follows_alias(self._config.uri):
            return self.serving
        try:
            version = current_version(self._config.uri, self._tracking_uri)
        except (ModelNotFound, MlflowException) as error:
            log.warning("%s: cannot resolve %s (%s); scoring with version %s", current.name, self._config.uri,
                        error, current.version)
            return self.serving
        if version in (current.version, self._refused):
            return self.serving
        try:
            resolved = resolve_model(self._config, self._tracking_uri, self._download_root)
            columns = self._prepare(resolved)
        except (ConfigError, ModelNotFound, MlflowException) as error:
            self._refused = version
            log.error("%s: refusing version %s of %s and scoring with version %s: %s", current.name, version,
                      self._config.uri, current.version, error)
            return self.serving
        log.info("%s: %s moved from version %s to %s; scoring with %s from this micro-batch on", current.name,
                 self._config.uri, current.version, resolved.version, resolved.version)
        self.serving = Serving(resolved, columns)
        return self.serving

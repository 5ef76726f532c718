"""From a model config's URI to an exact model version whose files the workers can load.

The driver resolves an alias or a version once, downloads the model's files and ships them to
the executors with the job, so that Python workers never talk to the registry and every score
names the version that produced it.
"""
from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rdv.config import ModelConfig

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelNotFound(LookupError):
    """The URI in a model config names no model the registry or the file system has."""


@dataclass(frozen=True)
class ResolvedModel:
    """One model job's model, pinned to a version."""

    name: str  # the model config's name, which every score carries
    version: str  # the registry version, or the run id / 'local' for unregistered models
    role: str
    local_dir: Path  # the model's files on the driver


def _version_of(uri: str, client: MlflowClient) -> tuple[str, str]:
    """(artifact URI pinned to a version, version) for a URI of any supported kind."""
    match = _REGISTRY_URI.match(uri)
    if match is None:
        if uri.startswith("runs:/"):
            return uri, uri.split("/")[1]
        if Path(uri).exists():
            return uri, "local"
        raise ModelNotFound(f"{uri} is neither models:/NAME@ALIAS, models:/NAME/VERSION, runs:/... nor an existing path")
    name, alias, version = match["name"], match["alias"], match["version"]
    try:
        if alias is not None:
            version = client.get_model_version_by_alias(name, alias).version
        else:
            client.get_model_version(name, version)
    except MlflowException as error:
        raise ModelNotFound(f"{uri}: {error.message}") from None
    return f"models:/{name}/{version}", str(version)


def _client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient()


def current_version(uri: str, tracking_uri: str) -> str:
    """The version a model URI points at now (an alias may have moved since a job started)."""
    return _version_of(uri, _client(tracking_uri))[1]


def resolve_model(model: ModelConfig, tracking_uri: str, download_root: Path) -> ResolvedModel:
    """Pin the config's URI to one version and download that version's files."""
    pinned_uri, version = _version_of(model.uri, _client(tracking_uri))
    # A fresh name per start: Spark refuses to ship two different directories under one name.
    for previous in download_root.glob(f"{model.name}-v*"):
        shutil.rmtree(previous, ignore_errors=True)
    target = download_root / f"{model.name}-v{version}-{uuid.uuid4().hex[:8]}"
    target.mkdir(parents=True)
    mlflow.artifacts.download_artifacts(artifact_uri=pinned_uri, dst_path=str(target))
    return ResolvedModel(name=model.name, version=version, role=model.role, local_dir=target)


def model_inputs(model: ResolvedModel) -> list[str] | None:
    """The input columns the model's signature names, or None when it has no signature."""
    signature = mlflow.models.Model.load(str(model.local_dir)).signature
    return None if signature is None else signature.inputs.input_names()

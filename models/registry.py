"""From a model config's URI to an exact model version whose files the workers can load.

The driver resolves an alias or a version, downloads that version's files and ships them to the
executors, so that Python workers never talk to the registry and every score names the version
that produced it. Roles follow MLflow's convention: the registry's `champion` and `challenger`
aliases say which version plays which part, and `promote` is the one place that moves them.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rdv.config import ModelConfig

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelNotFound(LookupError):
    """The URI in a model config names no model the registry or the file system has."""


@dataclass(frozen=True)
class Pinned:
    """What a model URI points at now."""

    uri: str  # an artifact URI that names exactly one version
    version: str  # the registry version, or the run id / 'local' for unregistered models
    registered_model: str | None  # the registry's name for it; None for runs:/ and paths


@dataclass(frozen=True)
class ResolvedModel:
    """One model job's model, pinned to a version, with its files on the driver."""

    name: str  # the model config's name, which every score carries
    version: str
    registered_model: str | None
    role: str
    local_dir: Path


def follows_alias(uri: str) -> bool:
    """Whether the URI names a registry alias, whose version may move while a job runs."""
    match = _REGISTRY_URI.match(uri)
    return match is not None and match["alias"] is not None


def pin(uri: str, tracking_uri: str) -> Pinned:
    """The exact version a URI of any supported kind points at now."""
    client = registry_client(tracking_uri)
    match = _REGISTRY_URI.match(uri)
    if match is None:
        if uri.startswith("runs:/"):
            return Pinned(uri, uri.split("/")[1], None)
        if Path(uri).exists():
            return Pinned(uri, "local", None)
        raise ModelNotFound(
            f"{uri} is neither models:/NAME@ALIAS, models:/NAME/VERSION, runs:/... nor an existing path"
        )
    name, alias, version = match["name"], match["alias"], match["version"]
    try:
        if alias is not None:
            version = client.get_model_version_by_alias(name, alias).version
        else:
            client.get_model_version(name, version)
    except MlflowException as error:
        raise ModelNotFound(f"{uri}: {error.message}") from None
    return Pinned(f"models:/{name}/{version}", str(version), name)


def registry_client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def current_version(uri: str, tracking_uri: str) -> str:
    """The version a model URI points at now (an alias may have moved since a job started)."""
    return pin(uri, tracking_uri).version


def clear_downloads(model_name: str, download_root: Path) -> None:
    """Forget the files a previous run of this model's job downloaded."""
    for previous in download_root.glob(f"{model_name}-v*"):
        shutil.rmtree(previous, ignore_errors=True)


def resolve_model(model: ModelConfig, tracking_uri: str, download_root: Path) -> ResolvedModel:
    """Pin the config's URI to the version it points at now and download that version's files."""
    pinned = pin(model.uri, tracking_uri)
    # A fresh name per download: Spark refuses to ship two different directories under one name.
    target = download_root / f"{model.name}-v{pinned.version}-{uuid.uuid4().hex[:8]}"
    target.mkdir(parents=True)
    mlflow.artifacts.download_artifacts(artifact_uri=pinned.uri, dst_path=str(target))
    return ResolvedModel(model.name, pinned.version, pinned.registered_model, model.role, target)


def model_inputs(model: ResolvedModel) -> list[str] | None:
    """The input columns the model's signature names, or None when it has no signature."""
    signature = mlflow.models.Model.load(str(model.local_dir)).signature
    return None if signature is None else signature.inputs.input_names()


# Who moved @champion: a person with `rdv promote`, or `rdv compare` under compare.promote.
BY_PERSON, BY_COMPARE = "rdv promote", "rdv compare"
# On the registered model: its last change of champion, as JSON (a Promotion's fields). In the registry,
# beside the aliases it explains, so that `rdv promote` needs no Spark to record it.
LAST_CHANGE_TAG = "rdv.last_change"
# On a version: when `rdv compare` rolled it back. It is not promoted automatically again until a
# person promotes it with `rdv promote`, which clears the tag.
ROLLED_BACK_TAG = "rdv.rolled_back"


@dataclass(frozen=True)
class Promotion:
    """A change of champion: `action` is promote or rollback."""

    registered_model: str
    champion: str  # the version that is the champion now
    previous_champion: str | None  # now the challenger, or None when there was no champion
    at: datetime
    action: str = "promote"
    by: str = BY_PERSON


def promote(
    registered_model: str, version: str, tracking_uri: str, by: str = BY_PERSON, action: str = "promote"
) -> Promotion:
    """Make a version the champion and the previous champion a challenger; rollback is the same
    call with the old version. Model jobs following either alias move to their new version at
    their next micro-batch, and the rendezvous prefers whatever scores as the champion. The change
    is recorded on the registered model (LAST_CHANGE_TAG); a person's promotion of a version that
    was rolled back clears its ROLLED_BACK_TAG."""
    client = registry_client(tracking_uri)
    try:
        target = client.get_model_version(registered_model, version)
    except MlflowException as error:
        raise ModelNotFound(f"models:/{registered_model}/{version}: {error.message}") from None
    try:
        previous = client.get_model_version_by_alias(registered_model, "champion").version
    except MlflowException:
        previous = None
    # The champion first: it is what answers, so it is the one that must not wait.
    client.set_registered_model_alias(registered_model, "champion", version)
    if previous is not None and str(previous) != str(version):
        client.set_registered_model_alias(registered_model, "challenger", previous)
    done = Promotion(
        registered_model, str(version), None if previous is None else str(previous), datetime.now(UTC), action, by
    )
    change = {
        "at": done.at.isoformat(),
        "action": action,
        "by": by,
        "from": done.previous_champion,
        "to": done.champion,
    }
    client.set_registered_model_tag(registered_model, LAST_CHANGE_TAG, json.dumps(change))
    if by == BY_PERSON and ROLLED_BACK_TAG in (target.tags or {}):
        client.delete_model_version_tag(registered_model, str(version), ROLLED_BACK_TAG)
    return done


def roll_back(registered_model: str, to_version: str, tracking_uri: str) -> Promotion:
    """@champion back to to_version, by `rdv compare`; the version it leaves is marked rolled back."""
    done = promote(registered_model, to_version, tracking_uri, by=BY_COMPARE, action="rollback")
    if done.previous_champion is not None and done.previous_champion != done.champion:
        registry_client(tracking_uri).set_model_version_tag(
            registered_model, done.previous_champion, ROLLED_BACK_TAG, done.at.isoformat()
        )
    return done


def last_change(registered_model: str, tracking_uri: str) -> Promotion | None:
    """The registered model's last change of champion, as `promote` recorded it."""
    tags = registry_client(tracking_uri).get_registered_model(registered_model).tags or {}
    if LAST_CHANGE_TAG not in tags:
        return None
    change = json.loads(tags[LAST_CHANGE_TAG])
    at = datetime.fromisoformat(change["at"])
    return Promotion(registered_model, change["to"], change["from"], at, change["action"], change["by"])


def rolled_back(registered_model: str, version: str, tracking_uri: str) -> bool:
    """Whether `rdv compare` rolled this version back and no person has promoted it since."""
    tags = registry_client(tracking_uri).get_model_version(registered_model, version).tags or {}
    return ROLLED_BACK_TAG in tags


def registered_name(uri: str) -> str | None:
    """The registered model a models:/ URI names, or None for any other URI."""
    match = _REGISTRY_URI.match(uri)
    return None if match is None else match["name"]

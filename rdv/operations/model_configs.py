"""`rdv model add` and `rdv model list`: a model is one file in conf/models, checked before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models.registry import ModelNotFound, current_version, pin
from models.scoring import feature_columns
from rdv.config import ConfigError, ModelConfig, PipelineConfig
from rdv.operations import runner


def add_model_config(
    config: PipelineConfig,
    name: str,
    uri: str,
    features: list[str] | None = None,
    output: str = "probability",
    role: str | None = None,
    force: bool = False,
) -> Path:
    """Write conf/models/<name>.yaml after validating it as the model job will: its fields, its
    features, and that the registry (or the file system) has the model."""
    path = config.conf_dir / "models" / f"{name}.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists (--force replaces it)")
    data: dict[str, Any] = {"uri": uri, "output": output}
    if features:
        data["features"] = list(features)
    if role:
        data["role"] = role
    try:
        model = ModelConfig(name=name, **data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"{path}: {problems}") from None
    feature_columns(model, config.spec, config.conf_dir)
    try:
        pin(uri, config.tracking_uri)
    except ModelNotFound as error:
        raise ConfigError(f"{path}: uri: {error}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Added by `rdv model add {name}`.\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def model_rows(config: PipelineConfig) -> list[dict]:
    """Each configured model: its role, the version its URI points at now, and whether its job runs:
    "yes", or "no" with why (never started, stopped, dead and when the supervisor starts it again, or
    failed for good, with the end of its log)."""
    jobs = runner.running_jobs(config)
    states = runner.query_states(config)
    supervised = runner.job_states(config)
    rows = []
    for name, model in sorted(config.models.items()):
        try:
            version = current_version(model.uri, config.tracking_uri)
        except ModelNotFound:
            version = "not in the registry"
        state, job_state = states.get(f"score-{name}", {}), supervised.get(f"score-{name}")
        group = state.get("pgid")
        history = runner.restarts_text(job_state or {})
        if runner.query_running(state):
            job = next((job for job, pid in jobs.items() if pid == group), None)
            running = f"yes, pid {group}" if job == f"score-{name}" else f"yes, in {job or f'pid {group}'}"
        elif job_state is not None and job_state.get("running"):
            running = f"no, starting, pid {job_state['pid']}"
        elif job_state is not None:
            running = "no, " + runner.job_status(job_state)
        else:
            running = "no"  # never started, stopped, failed, or its process is gone (a stale file)
        if history:
            running += f"; {history}"
        rows.append(
            {
                "model": name,
                "role": model.role,
                "uri": model.uri,
                "version": version,
                "running": running,
                "log_tail": (job_state or {}).get("log_tail", []),
            }
        )
    return rows

"""The one configuration model of the pipeline, loaded from a conf directory and validated once.

A conf directory holds ``pipeline.yaml`` (broker, topics, paths, Spark), ``features.yaml`` (the
raw events and the canonical features, see rdv/feature_spec.py), ``policy.yaml`` (how requests are
answered, see rdv/policy.py) and one ``models/<name>.yaml`` per model job. Relative paths in it
are resolved against the conf directory's parent (the project root), so the same conf works from
any working directory.
Every error names the file and the field, because the person reading it is about to edit that
file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from rdv import profiles
from rdv.durations import Duration, duration_ms
from rdv.feature_spec import FeatureSpec, load_feature_spec
from rdv.policy import Policy, load_policy
from rdv.validation import ConfigError, Frozen, read_yaml, validated

# The metrics `compare.metrics` may name, per task (comparison/metrics.py computes each).
CLASSIFICATION = ("accuracy", "precision", "recall", "roc_auc", "log_loss")
REGRESSION = ("mae", "rmse")

ROLES = ("champion", "challenger", "canary")


class Topic(Frozen):
    name: str = Field(min_length=1)
    partitions: int = Field(default=2, ge=1)


class Topics(Frozen):
    raw: Topic
    features: Topic
    scores: Topic
    results: Topic
    quarantine: Topic
    # The rendezvous's clock: the features job publishes a heartbeat there once every raw event
    # before it is on rdv.features, and only while a request may wait (see rdv/heartbeat.py).
    heartbeats: Topic = Topic(name="rdv.heartbeats", partitions=1)
    # Ground truth, days after the requests: the rendezvous job keeps it in Delta `labels`.
    labels: Topic = Topic(name="rdv.labels", partitions=1)
    # Each model job's CPU and requests, sampled every compare.cost_sample: the recorder keeps them
    # in Delta `costs` (models/cost.py).
    costs: Topic = Topic(name="rdv.costs", partitions=1)

    def all(self) -> list[Topic]:
        return [
            self.raw,
            self.features,
            self.scores,
            self.results,
            self.quarantine,
            self.heartbeats,
            self.labels,
            self.costs,
        ]


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class KafkaSecurity(Frozen):
    """How every job and the CLI connect to the brokers (rdv/kafka_security.py). Secrets are never in
    the file: the fields ending in _env name the environment variables that hold them."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username_env: str | None = Field(default=None, pattern=_ENV_NAME)
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    # TLS, in PEM files: the CA certificates the brokers' certificates are checked against, and for
    # mutual TLS the client's private key with its certificate chain, in one file.
    ca_file: Path | None = None
    keystore_file: Path | None = None
    key_password_env: str | None = Field(default=None, pattern=_ENV_NAME)

    @model_validator(mode="after")
    def _consistent(self):
        sasl = self.protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.username_env and self.password_env):
            raise ValueError(f"protocol {self.protocol} needs sasl_mechanism, username_env and password_env")
        if not sasl and (self.sasl_mechanism or self.username_env or self.password_env):
            raise ValueError(f"sasl_mechanism, username_env and password_env need a SASL protocol, not {self.protocol}")
        if not self.protocol.endswith("SSL") and (self.ca_file or self.keystore_file or self.key_password_env):
            raise ValueError(f"ca_file, keystore_file and key_password_env need SSL or SASL_SSL, not {self.protocol}")
        return self


class KafkaConfig(Frozen):
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: Topics
    security: KafkaSecurity = KafkaSecurity()
    # Extra options passed to Spark's Kafka source and sink (without the 'kafka.' prefix).
    options: dict[str, str] = Field(default_factory=dict)
    # Producer settings of every Kafka sink (without the 'kafka.' prefix): a micro-batch's records
    # are sent in large batches; lingering 20 ms is nothing next to a trigger. Not compressed by
    # default: every consumer of the topics would need the codec (kafka-python needs a package for lz4).
    producer: dict[str, str] = Field(default_factory=lambda: {"linger.ms": "20", "batch.size": "524288"})
    # Consumer settings of every Kafka source (without the 'kafka.' prefix). A source's consumer
    # left a fetch waiting in the broker at the end of its topic, and the next micro-batch's read
    # waited for it, up to Kafka's fetch.max.wait.ms (500 ms): a copy hop reading a topic that
    # Spark writes in bursts took 0.26 s per micro-batch instead of 0.05 (bench/README.md).
    consumer: dict[str, str] = Field(default_factory=lambda: {"fetch.max.wait.ms": "10"})

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value


class PathsConfig(Frozen):
    var: Path = Path("var")
    jars: Path = Path("var/jars")  # what `make jars` caches: spark/ and kafka/
    # Where the Delta tables and the queries' checkpoints live: a path, or a URI that every
    # executor reaches (s3a://bucket/rdv/delta, abfss://..., hdfs://...), kept as written.
    tables: str = "var/delta"
    checkpoints: str = "var/checkpoints"


class MlflowConfig(Frozen):
    tracking_uri: str = "sqlite:///var/mlflow/mlflow.db"
    artifact_root: Path = Path("var/mlflow/artifacts")
    # How often a model job following an alias asks the registry whether it moved; `rdv promote`
    # tells the jobs at once through var/run/aliases-moved (models/following.py).
    alias_check: Duration = "30 seconds"


class SparkConfig(Frozen):
    master: str = "local[2]"
    shuffle_partitions: int = Field(default=2, ge=1)
    # The latency path (features, models, rendezvous): records wait at most one `trigger` for their
    # micro-batch, and none once `trigger_records` requests' records wait; an idle query looks for
    # records every `poll` (rdv/streams.py).
    trigger: Duration = "1 second"
    trigger_records: int = Field(default=500, ge=1)
    poll: Duration = "200 milliseconds"
    # Trigger of the queries that only record into Delta (the decoy's archive; the recorder's results,
    # scores, quarantine and labels).
    table_trigger: Duration = "5 seconds"
    # Trigger of the Great Expectations validation of the archive (Delta data_quality).
    quality_trigger: Duration = "1 minute"
    ui: bool = False
    # spark-submit jobs take their whole driver heap when they start (-Xms as -Xmx, pre-touched), so
    # a job's RSS that still grows is native memory. `make soak` turns it on.
    heap_at_start: bool = False
    # Any other Spark setting, passed through verbatim: to every session, and on the command line of
    # every spark-submit job, so that what its JVM needs at launch (Java options) reaches it.
    conf: dict[str, str] = Field(default_factory=dict)


class FeaturesJobConfig(Frozen):
    # Heartbeats on rdv.heartbeats keep the rendezvous watermark moving while requests wait.
    heartbeat_interval: Duration = "1 second"


class RendezvousConfig(Frozen):
    """When decisions are final; see docs/rendezvous.md for the timeline."""

    # No request may ask for a longer deadline; larger ones are clipped to it.
    max_deadline_ms: int = Field(default=10_000, gt=0)
    # After its deadline, how long a request still waits for a late score before it falls back
    # to the default answer (on event time: scored_at - event_time <= deadline_ms + grace).
    grace: Duration = "1 second"
    # How long a score may take from its model job to the rendezvous. A decision that waits is
    # made this much later on the wall clock, so that live and replayed decisions agree.
    transit: Duration = "3 seconds"

    @property
    def grace_ms(self) -> int:
        return duration_ms(self.grace)

    @property
    def transit_ms(self) -> int:
        return duration_ms(self.transit)


@dataclass(frozen=True)
class Timing:
    """How long the rendezvous waits, in milliseconds (PipelineConfig.timing): the longest
    deadline a request may ask for, the grace for late scores and the transit of a score to the
    rendezvous (the `rendezvous` section), and how far behind its arrival an event may be (the
    feature spec's limits.max_lateness).

    The watermark trails the latest event time seen by the transit (heartbeats and the requests
    of the longest deadline move it alike), and a request reaches the rendezvous up to
    `lateness_ms` behind that time. So a request's decision point is never less than
    `lateness_ms` after its event time: with its deadline and the grace alone, a request whose
    deadline is shorter than the lateness (200 ms, say) could come behind the watermark and be
    dropped, unanswered. What is in time still goes by its own deadline; such a request's
    default answer comes later (docs/rendezvous.md).
    """

    max_deadline_ms: int
    grace_ms: int
    transit_ms: int
    lateness_ms: int

    @property
    def longest_wait_ms(self) -> int:
        """From event time to decision point, for a request of the longest deadline (a heartbeat)."""
        return max(self.max_deadline_ms + self.grace_ms, self.lateness_ms)

    @property
    def watermark_ms(self) -> int:
        """The watermark's delay: the longest a row can precede its own decision point, plus the
        time a score may take to reach the rendezvous (a waiting request is decided that much
        after its decision point)."""
        return self.longest_wait_ms + self.transit_ms


class SupervisorConfig(Frozen):
    """How `rdv up`'s supervisor restarts a job that died (docs/operations.md)."""

    # The first restart waits this long; each failure in a row doubles it, up to max_backoff.
    backoff: Duration = "2 seconds"
    max_backoff: Duration = "1 minute"
    # A job that ran this long before it died starts again from the first backoff.
    healthy_after: Duration = "2 minutes"
    # How long a job may take to stop its queries after SIGTERM before it is killed.
    stop_timeout: Duration = "1 minute"
    # A job that failed max_failures times within failure_window is not started again: a fault that
    # lasts (a model that cannot load) would restart it forever. It shows as failed, with the end
    # of its log, in `rdv status` and `rdv model list`; the other jobs keep running.
    max_failures: int = Field(default=5, ge=1)
    failure_window: Duration = "10 minutes"
    # The CPU niceness the recording jobs (decoy, recorder) get above the others, so that the kernel
    # gives the answers the cores first; 0 runs them alike.
    recording_nice: int = Field(default=10, ge=0, le=19)

    def failures_in_a_row(self, before: int, ran_s: float) -> int:
        """The failures in a row, counting one that came after ran_s of running: a run of
        `healthy_after` starts the count again."""
        return 1 if ran_s >= duration_ms(self.healthy_after) / 1000 else before + 1

    def backoff_s(self, failures: int) -> float:
        """The wait before a start after `failures` failures in a row: doubled each time, capped.
        The supervisor waits it before starting a job again, a job before starting a query again."""
        first, cap = duration_ms(self.backoff) / 1000, duration_ms(self.max_backoff) / 1000
        return min(first * 2 ** max(failures - 1, 0), cap)


class RecommendationRule(Frozen):
    """When `rdv compare` says promote, keep watching or retire a challenger (docs/analysis.md)."""

    # The metric the recommendation is about; its improvement is what the interval is of. By
    # default roc_auc for a classification, rmse for a regression.
    metric: str | None = None
    # Only labelled requests whose event time is within this much of the latest one count.
    over: Duration = "7 days"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    resamples: int = Field(default=2000, ge=100)
    # Fewer labelled requests than this, and the answer is "keep watching", whatever the interval.
    min_labelled: int = Field(default=200, ge=1)
    # Promote when the interval's lower end is above this improvement; retire when its upper end
    # is below minus this.
    min_effect: float = Field(default=0.0, ge=0.0)
    # At most this many labelled requests are resampled (a uniform sample of them, if there are more).
    max_rows: int = Field(default=200_000, ge=1000)


class PromotionRule(Frozen):
    """`rdv compare` moving @champion by itself when the recommendation says promote, under guards,
    and moving it back when the new champion does worse (docs/analysis.md, "Guarded promotion").
    Off unless enabled: a person decides, as before."""

    enabled: bool = False
    # At most one change of champion (promotion or rollback) within this long of the last one.
    cooldown: Duration = "1 day"
    # Never promote a challenger when more than this share of its scores were errors.
    max_error_share: float = Field(default=0.01, ge=0.0, le=1.0)
    # For this long after a change of champion, the new champion is compared with the previous one,
    # which scores as the challenger: significantly worse on the in-time rate or the decisive
    # metric, and @champion goes back.
    watch: Duration = "1 day"


class DriftConfig(Frozen):
    # The distribution every window is compared with: "first" (the first window with data) or an
    # interval of event time, "2026-11-01T00:00:00Z/2026-11-08T00:00:00Z".
    reference: str = "first"
    bins: int = Field(default=10, ge=2, le=100)
    # A window with fewer rows is not flagged: its index would be mostly sampling noise.
    min_rows: int = Field(default=100, ge=1)
    # A population stability index above this is flagged (0.1: some shift, 0.25: a major one).
    threshold: float = Field(default=0.2, gt=0.0)

    @field_validator("reference")
    @classmethod
    def _interval(cls, value: str) -> str:
        if value != "first":
            start, _, end = value.partition("/")
            try:
                if datetime.fromisoformat(start) >= datetime.fromisoformat(end):
                    raise ValueError("starts after it ends")
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{value!r} is neither 'first' nor an interval 'START/END' of ISO times ({error})"
                ) from None
        return value


class CompareConfig(Frozen):
    """`rdv compare`: the comparison tables, the recommendation and drift (docs/analysis.md)."""

    task: Literal["classification", "regression"] = "classification"
    window: Duration = "1 hour"
    # The metrics computed per window; by default all of the task's.
    metrics: tuple[str, ...] | None = None
    recommend: RecommendationRule = RecommendationRule()
    promote: PromotionRule = PromotionRule()
    drift: DriftConfig = DriftConfig()
    # How often each model job publishes the CPU it spent and the requests it scored on rdv.costs,
    # which the recorder keeps in the table `costs` (models/cost.py): one small message, while
    # requests come; none while idle.
    cost_sample: Duration = "10 seconds"
    # The Spark SQL database the tables are registered in, so that analysts query them by name.
    database: str = Field(default="rdv", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _metrics_of_the_task(self):
        known = CLASSIFICATION if self.task == "classification" else REGRESSION
        for name in self.metrics or ():
            if name not in known:
                raise ValueError(f"metrics: {name!r} is not a {self.task} metric ({', '.join(known)})")
        if self.decisive_metric not in self.metric_names:
            raise ValueError(
                f"recommend.metric: {self.decisive_metric!r} is not among the metrics computed "
                f"({', '.join(self.metric_names)})"
            )
        return self

    @property
    def decisive_metric(self) -> str:
        """The metric the recommendation is about."""
        return self.recommend.metric or ("roc_auc" if self.task == "classification" else "rmse")

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.metrics or (CLASSIFICATION if self.task == "classification" else REGRESSION)


_MEMORY = r"^\d+[kmgt]$"


class ModelSparkConfig(Frozen):
    """A model job's own Spark settings; unset ones fall back to the pipeline's."""

    trigger: Duration | None = None
    # At most this many feature records per micro-batch, so a slow model catches up in steps.
    max_offsets_per_trigger: int | None = Field(default=None, gt=0)
    # Memory of the job's JVM (spark-submit --driver-memory in local mode, executors on a cluster).
    memory: str = Field(default="1g", pattern=_MEMORY)
    # A hard limit on each Python worker's memory (spark.executor.pyspark.memory), for models
    # that could grow without bound; unset, workers are not limited.
    python_memory: str | None = Field(default=None, pattern=_MEMORY)


class ModelConfig(Frozen):
    """One model job: which model it serves and how its output reads."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    uri: str = Field(min_length=1)
    role: Literal["champion", "challenger", "canary"]
    features: tuple[str, ...] | None = None
    output: Literal["probability", "label", "regression"] = "probability"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    spark: ModelSparkConfig = ModelSparkConfig()

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == "served":
            raise ValueError("'served' is reserved: the comparison tables call the answer the business got so")
        return value

    @model_validator(mode="before")
    @classmethod
    def _role_from_alias(cls, data):
        """Without an explicit role, a model following @champion, @challenger or @canary has that role."""
        if isinstance(data, dict) and data.get("role") is None:
            uri = str(data.get("uri", ""))
            alias = uri.rpartition("@")[2] if uri.startswith("models:/") and "@" in uri else None
            data = {**data, "role": alias if alias in ROLES else "challenger"}
        return data


class PipelineConfig(Frozen):
    # local: the embedded default, with a broker that rdv starts; any other profile brings its own
    # services (rdv/profiles.py).
    profile: str = Field(default=profiles.LOCAL, pattern=profiles.NAME)
    kafka: KafkaConfig
    paths: PathsConfig = PathsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    spark: SparkConfig = SparkConfig()
    features: FeaturesJobConfig = FeaturesJobConfig()
    # Loaded from features.yaml beside pipeline.yaml.
    feature_spec: FeatureSpec | None = None
    # Loaded from policy.yaml beside pipeline.yaml; the features job re-reads that file while it runs.
    policy: Policy = Policy()
    rendezvous: RendezvousConfig = RendezvousConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    compare: CompareConfig = CompareConfig()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    # Where the conf was loaded from; relative paths are resolved against its parent.
    conf_dir: Path = Path("conf")

    @property
    def conf_args(self) -> list[str]:
        """--conf and --profile for a job or command started from this config, so that it loads the same."""
        return ["--conf", str(self.conf_dir), "--profile", self.profile]

    @property
    def root(self) -> Path:
        return self.conf_dir.resolve().parent

    def path(self, relative: Path | str) -> Path:
        """A configured path, absolute; relative ones are under the project root."""
        relative = Path(relative)
        return relative if relative.is_absolute() else self.root / relative

    def location(self, path_or_uri: str) -> str:
        """A configured storage location: a URI as it is, a path made absolute."""
        scheme = urlparse(path_or_uri).scheme
        if len(scheme) > 1:  # not a drive letter
            return path_or_uri.rstrip("/")
        return str(self.path(path_or_uri))

    def table(self, name: str) -> str:
        return f"{self.location(self.paths.tables)}/{name}"

    def checkpoint(self, query: str) -> str:
        return f"{self.location(self.paths.checkpoints)}/{query}"

    @property
    def alias_marker(self) -> Path:
        """The file `rdv promote` touches so that model jobs ask the registry at once."""
        return self.path(self.paths.var) / "run" / "aliases-moved"

    @property
    def policy_file(self) -> Path:
        return self.conf_dir / "policy.yaml"

    @property
    def feature_spec_file(self) -> Path:
        return self.conf_dir / "features.yaml"

    @property
    def spec(self) -> FeatureSpec:
        """The feature spec; load_config always sets it."""
        if self.feature_spec is None:
            raise ConfigError(f"{self.feature_spec_file}: the feature spec was not loaded")
        return self.feature_spec

    @property
    def timing(self) -> Timing:
        """The rendezvous's waits (Timing)."""
        waits = self.rendezvous
        return Timing(waits.max_deadline_ms, waits.grace_ms, waits.transit_ms, self.spec.limits.max_lateness_ms)

    @property
    def tracking_uri(self) -> str:
        """The MLflow URI with a relative sqlite path made absolute."""
        prefix = "sqlite:///"
        uri = self.mlflow.tracking_uri
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
            return prefix + str(self.path(uri[len(prefix) :]))
        return uri

    def model(self, name: str) -> ModelConfig:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"{self.conf_dir / 'models' / (name + '.yaml')}: no such model config (configured: {known})"
            ) from None


def _read_pipeline(conf_dir: Path, asked: str | None) -> tuple[dict, dict]:
    """pipeline.yaml with the profile's settings over it, each file's variables filled in; and the
    profile's settings alone, to tell which file a bad field came from."""
    pipeline_file = conf_dir / "pipeline.yaml"
    data = profiles.interpolate(read_yaml(pipeline_file), pipeline_file)
    name, explicit = profiles.chosen(asked, data.get("profile"))
    path = profiles.profile_file(conf_dir, name)
    settings = {}
    # A profile that pipeline.yaml itself names needs no file of its own: a conf that says
    # `profile: cluster` and holds the cluster's settings loads the same when its jobs are
    # started with --profile cluster.
    if name != profiles.LOCAL and (path.exists() or explicit and name != data.get("profile")):
        if not path.exists():
            raise ConfigError(
                f"{path}: no such profile (profiles here: {', '.join(profiles.known_profiles(conf_dir))})"
            )
        settings = profiles.interpolate(read_yaml(path), path)
        if "profile" in settings:
            raise ConfigError(f"{path}: profile: a profile is named by its file; remove this field")
    return {**profiles.overlay(data, settings), "profile": name}, settings


def load_model_config(path: Path) -> ModelConfig:
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name: {data['name']!r} must match the file name {path.stem!r}")
    return validated(ModelConfig, data, path)


def load_config(conf_dir: Path | str = "conf", profile: str | None = None) -> PipelineConfig:
    """Load and validate ``pipeline.yaml`` with the chosen profile's settings over it (see
    rdv/profiles.py) and every ``models/*.yaml`` under ``conf_dir``."""
    conf_dir = Path(conf_dir)
    pipeline_file = conf_dir / "pipeline.yaml"
    data, profile_settings = _read_pipeline(conf_dir, profile)
    if "policy" in data:
        raise ConfigError(
            f"{pipeline_file}: policy: the policy has its own file now, {conf_dir / 'policy.yaml'}; "
            "move the section there (without the 'policy:' key)"
        )
    if "schema_version" in (data.get("features") or {}):
        raise ConfigError(
            f"{pipeline_file}: features.schema_version: the schema version is declared in "
            f"{conf_dir / 'features.yaml'} now; remove it here"
        )
    models = {p.stem: load_model_config(p) for p in sorted((conf_dir / "models").glob("*.yaml"))}
    profile_path = profiles.profile_file(conf_dir, str(data.get("profile")))
    config = validated(
        PipelineConfig,
        {**data, "models": models, "conf_dir": conf_dir.resolve()},
        pipeline_file,
        # A bad field is reported in the file that set it: the profile's, or pipeline.yaml.
        origin=lambda loc: profile_path if profiles.sets(profile_settings, loc) else pipeline_file,
    )
    spec = load_feature_spec(config.feature_spec_file)
    policy = load_policy(config.policy_file, config.rendezvous.max_deadline_ms, spec.field_types())
    return config.model_copy(update={"policy": policy, "feature_spec": spec})

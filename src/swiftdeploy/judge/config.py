"""The judge's config file (`judge.yaml`): where it listens, the Prometheus it reads
and its PromQL templates, the canary policy's settings, where it keeps its analyses
and its audit trail, and who may call it. Loaded and validated once, with the
manifest's YAML reader and error style: one line naming file:line and the key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swiftdeploy.errors import ManifestError
from swiftdeploy.manifest import (
    API_VERSION,
    Analysis,
    EnvSecret,
    KubeSecret,
    Name,
    Policy,
    PositiveDuration,
    friendly_error,
    read_settings_file,
    rendering_queries,
)
from swiftdeploy.metrics.prometheus import DEFAULT_QUERIES

KIND = "Judge"
Controller = Literal["argo", "flagger"]
CONTROLLERS: tuple[Controller, ...] = ("argo", "flagger")


def _selecting(selector: str) -> dict[str, str]:
    """The default queries with the `track` selector replaced by a controller's own."""
    return {
        name: text.replace('track="{{ track }}"', selector)
        for name, text in DEFAULT_QUERIES.items()
    }


# Argo Rollouts labels each pod with its ReplicaSet's pod-template hash
# (`rollouts-pod-template-hash`; Prometheus's usual kubernetes_sd labelmap writes it
# `rollouts_pod_template_hash`); the AnalysisTemplate passes the stable and canary
# hashes (`valueFrom: podTemplateHashValue: Stable|Latest`), each track's `hash`.
ARGO_QUERIES = _selecting('namespace="{{ namespace }}",rollouts_pod_template_hash="{{ hash }}"')
# Flagger runs the stable as the Deployment `<name>-primary` and the canary as the
# target Deployment `<name>` (the Services `<name>-primary` and `<name>-canary` select
# them): pods named `<workload>-<replicaset hash>-<suffix>`, each track's `workload`.
FLAGGER_QUERIES = _selecting(
    'namespace="{{ namespace }}",pod=~"{{ workload }}-[a-z0-9]+-[a-z0-9]+"'
)
DEFAULT_TEMPLATES: dict[Controller, dict[str, str]] = {
    "argo": ARGO_QUERIES,
    "flagger": FLAGGER_QUERIES,
}
# What a template may use: the provider's own variables and the call's.
QUERY_SAMPLE = {
    "track": "canary",
    "window": "60000ms",
    "q": 0.99,
    "namespace": "default",
    "name": "app",
    "hash": "6d4f8c9b7",
    "workload": "app-primary",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Query = Annotated[str, Field(max_length=4096)]


class Queries(_Model):
    """Overrides of the default templates, per controller (any of QUERY_NAMES)."""

    argo: dict[str, Query] = Field(default_factory=dict)
    flagger: dict[str, Query] = Field(default_factory=dict)

    @field_validator("argo", "flagger")
    @classmethod
    def _templates_render(cls, queries: dict[str, str]) -> dict[str, str]:
        return rendering_queries(queries, QUERY_SAMPLE)

    def templates(self, controller: Controller) -> dict[str, str]:
        overrides: dict[str, str] = getattr(self, controller)
        return {**DEFAULT_TEMPLATES[controller], **overrides}


class JudgePrometheus(_Model):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    # increase() needs two samples: a look less than two intervals after the last
    # one counts nothing yet (it is counted at the next).
    scrape_interval: PositiveDuration = 15.0
    timeout: PositiveDuration = 5.0
    # The stable's last `window` fixes the latency bound of a new analysis.
    window: PositiveDuration = 300.0
    queries: Queries = Field(default_factory=Queries)


class Caller(_Model):
    """Who may call: a name for the trail and the log, and a bearer token read from the
    environment or from a mounted Secret's key (never written in this file)."""

    name: Name
    token: EnvSecret | KubeSecret


class Retention(_Model):
    """Old analyses are pruned: beyond the newest `max_analyses`, or unused for
    `max_age`. A rollout longer than that would start a new ledger (new evidence)."""

    max_analyses: int = Field(default=1000, ge=1, le=1_000_000)
    max_age: PositiveDuration = 7 * 86400.0  # the longest duration a setting takes


class JudgeAudit(_Model):
    path: str = Field(default=".swiftdeploy-judge/history.jsonl", min_length=1, max_length=4096)
    max_bytes: int = Field(default=10_000_000, ge=4096, le=1_000_000_000)


_LISTEN = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class JudgeConfig(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["swiftdeploy/v1"] = Field(alias="apiVersion")
    kind: Literal["Judge"]
    listen: str = "0.0.0.0:8080"
    prometheus: JudgePrometheus
    policy: Policy = Field(default_factory=Policy)
    # min_duration and max_duration of a step as the canary policy reads them, and the
    # canary's warm-up (counted from the analysis's first call).
    analysis: Analysis = Field(default_factory=Analysis)
    data_dir: str = Field(default=".swiftdeploy-judge", min_length=1, max_length=4096)
    audit: JudgeAudit = Field(default_factory=JudgeAudit)
    retention: Retention = Field(default_factory=Retention)
    callers: list[Caller] = Field(min_length=1, max_length=1000)
    # Where a Secret named in `callers` is mounted: <secrets_dir>/<secret>/<key>.
    secrets_dir: str = "/var/run/secrets/swiftdeploy-judge"
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10_485_760)
    request_timeout: PositiveDuration = 10.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = _LISTEN.match(value)
        if match is None or not 0 <= int(match.group("port")) < 65536:  # 0: any free port
            raise ValueError(f"{value!r} is not host:port, e.g. 0.0.0.0:8080")
        return value

    @field_validator("callers")
    @classmethod
    def _unique(cls, callers: list[Caller]) -> list[Caller]:
        names = [caller.name for caller in callers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"caller names must be unique: {', '.join(twice)}")
        return callers

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class LoadedJudge:
    config: JudgeConfig
    path: Path

    def resolve(self, setting: str) -> Path:
        """A path setting: relative to the config file's directory."""
        return self.path.parent / setting

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.config.data_dir)

    @property
    def audit_path(self) -> Path:
        return self.resolve(self.config.audit.path)

    @property
    def policy_dir(self) -> Path:
        return self.resolve(self.config.policy.directory)


def load_judge(path: Path) -> LoadedJudge:
    """Load and validate; every failure is one ManifestError naming file, line and key."""
    path = path.resolve()
    data, lines = read_settings_file(
        path, "judge config", "run `swiftdeploy judge init` or pass -c FILE"
    )
    if data.get("kind") != KIND:
        line = lines.get(("kind",))
        raise ManifestError(
            f"{path}:{line or 1}: kind must be {KIND} (this is not a judge config)",
            hint=f"start the file with apiVersion: {API_VERSION} and kind: {KIND}",
        )
    try:
        config = JudgeConfig.model_validate(data)
    except ValidationError as exc:
        raise friendly_error(path, exc, lines) from None
    return LoadedJudge(config, path)


DEFAULT_CONFIG = f"""\
# SwiftDeploy's judge: answers Argo Rollouts' `web` metric and Flagger's webhooks with
# promote, hold or rollback, from the team's Prometheus (read-only) and the canary
# policy. Reference: docs/judge.md.
apiVersion: {API_VERSION}
kind: {KIND}
listen: 0.0.0.0:8080
prometheus:
  url: http://prometheus.monitoring.svc:9090
  scrape_interval: 15s     # looks closer together than two scrapes count at the next
  window: 5m               # the stable's recent traffic fixes the latency bound
  # queries:               # override the defaults per controller (docs/judge.md), e.g.
  #   argo:
  #     requests: >-
  #       sum(increase(http_requests_total{{namespace="{{{{ namespace }}}}",
  #       rollouts_pod_template_hash="{{{{ hash }}}}"}}[{{{{ window }}}}]))
policy:
  directory: policies      # the canary policy (Rego): `swiftdeploy init` writes the shipped one
  alpha: 0.01              # a healthy canary is rolled back at most this often, per analysis
  beta: 0.1                # a regression of the `detect` size is promoted at most this often
  detect:
    errors: +1%
    latency: +100ms
  thresholds:
    max_error_rate: 0.01
    max_p99_ms: 500
analysis:
  min_duration: 30s        # a step is watched at least this long
  max_duration: 10m        # then the canary policy's hold says so
  warmup: {{time: 60s, requests: 300}}  # latency is tested after the canary's first moments
data_dir: .swiftdeploy-judge       # one JSON file per analysis
audit:
  path: .swiftdeploy-judge/history.jsonl
retention:
  max_analyses: 1000
  max_age: 168h            # 7 days, the longest it takes
callers:                   # each caller's bearer token: from the environment or a mounted Secret
  - name: argo-rollouts
    token: {{env: JUDGE_TOKEN_ARGO}}
  - name: flagger
    token: {{secret: swiftdeploy-judge-tokens, key: flagger}}
"""


def with_overrides(
    loaded: LoadedJudge, *, listen: str | None = None, secrets_dir: str | None = None
) -> LoadedJudge:
    """The config with command-line overrides (validated as the file's values are)."""
    updates = {"listen": listen, "secrets_dir": secrets_dir}
    given = {key: value for key, value in updates.items() if value is not None}
    if not given:
        return loaded
    data = {**loaded.config.model_dump(by_alias=True), **given}
    try:
        return LoadedJudge(JudgeConfig.model_validate(data), loaded.path)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise ManifestError(f"--{field.replace('_', '-')}: {error['msg']}") from None

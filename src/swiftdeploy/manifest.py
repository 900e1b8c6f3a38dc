"""The manifest (`swiftdeploy.yaml`): pydantic models, loading, friendly errors.

Every value that later reaches an nginx config, an argv or a file path is
constrained here, so nothing downstream has to re-validate or quote it.
"""

from __future__ import annotations

import difflib
import itertools
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from swiftdeploy.durations import DURATION_PATTERN, format_duration, parse_duration
from swiftdeploy.errors import BadInputError, ManifestError
from swiftdeploy.registry import plugin_names

API_VERSION = "swiftdeploy/v1"

MAX_DURATION_S = 7 * 86400  # no setting waits longer than a week
# What a duration may be written as (`90`, `1m30s`): the schema's view of the fields
# below, which hold seconds once read.
DurationInput = (
    Annotated[str, Field(pattern=DURATION_PATTERN)]
    | Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
)
Duration = Annotated[
    float,
    Field(ge=0, le=MAX_DURATION_S),
    BeforeValidator(parse_duration, json_schema_input_type=DurationInput),
]
PositiveDuration = Annotated[
    float,
    Field(gt=0, le=MAX_DURATION_S),
    BeforeValidator(parse_duration, json_schema_input_type=DurationInput),
]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
# One pattern for versions wherever one enters (manifest and CLI): it names replicas,
# supervisord programs and log files, so nothing else may pass.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
Version = Annotated[str, Field(pattern=VERSION_PATTERN)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")]
CookieName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")]
# A URL path with no trailing slash, quoting or nginx syntax: it goes into nginx.conf.
PrivatePath = Annotated[str, Field(pattern=r"^(/[A-Za-z0-9._~-]+)+$", max_length=200)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
UrlPath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9/_.~-]{0,200}$")]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _known(kind: str, group: str, builtins: tuple[str, ...]) -> Callable[[str], str]:
    """A pluggable part's name: a built-in or one an installed plugin registers under the
    entry point `group` (the registries in runtime/, metrics/, policy/ load it)."""

    def known(name: str) -> str:
        plugins = plugin_names(group)
        if name not in builtins and name not in plugins:
            choices = ", ".join([*builtins, *plugins])
            raise ValueError(f"unknown {kind} {name!r}; choose one of: {choices}")
        return name

    return known


def _offered(builtins: tuple[str, ...]) -> WithJsonSchema:
    """The schema offers the built-ins to an editor and accepts a plugin's name."""
    plugin = {"type": "string", "pattern": r"^[a-z][a-z0-9_-]*$"}
    return WithJsonSchema({"anyOf": [{"enum": list(builtins)}, plugin]})


BUILTIN_RUNTIMES = ("local", "docker", "kubernetes")
BUILTIN_PROVIDERS = ("scrape", "prometheus", "nginx")
BUILTIN_ENGINES = ("embedded", "opa")
RuntimeName = Annotated[
    str,
    AfterValidator(_known("runtime", "swiftdeploy.runtimes", BUILTIN_RUNTIMES)),
    _offered(BUILTIN_RUNTIMES),
]
ProviderName = Annotated[
    str,
    AfterValidator(_known("metrics provider", "swiftdeploy.metrics_providers", BUILTIN_PROVIDERS)),
    _offered(BUILTIN_PROVIDERS),
]
EngineName = Annotated[
    str,
    AfterValidator(_known("policy engine", "swiftdeploy.policy_engines", BUILTIN_ENGINES)),
    _offered(BUILTIN_ENGINES),
]

_COMMAND_FIELDS = {"port", "version"}
# The local runtime gives each replica its port in this variable as well as in {port}.
PORT_ENV = "PORT"
# Keys of earlier versions, with what replaced them: named in the error, not "unknown".
_REMOVED = {
    "on_timeout": (
        "on_timeout was removed: a step still undecided at max_duration now holds, with its"
        " evidence kept, and never rolls back for lack of evidence; delete the key"
    ),
    "min_requests": (
        "min_requests was removed: a step now passes when a regression of the size in"
        " policy.detect would have been caught (power 1 - beta); delete the key"
    ),
    "statistics": (
        "policy.statistics was removed: say what to catch in policy.detect"
        " (errors: +1%, latency: +100ms) and policy.beta; delete the block"
    ),
}
# Response headers nginx or the service already send, which traffic.track_header must not name.
_STANDARD_RESPONSE_HEADERS = frozenset(
    {
        "cache-control", "connection", "content-encoding", "content-length", "content-type",
        "date", "etag", "keep-alive", "location", "server", "set-cookie",
        "transfer-encoding", "vary", "www-authenticate",
    }
)  # fmt: skip
_LISTEN = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def relative_path(value: str, what: str) -> str:
    """A path inside the project: relative, no '..', no NUL or newline, not empty."""
    if not value or not value.strip():
        raise ValueError(f"{what} cannot be empty")
    if "\x00" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{what} cannot contain NUL or newline characters")
    candidate = Path(value)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise ValueError(f"{what} must be relative and stay inside the project (no '..')")
    return value


def require_version(value: str, where: str) -> str:
    """`value` if it is a version SwiftDeploy accepts; else a BadInputError (exit 2)."""
    if re.fullmatch(VERSION_PATTERN, value):
        return value
    raise BadInputError(
        f"{where}: {value!r} is not a version",
        hint="use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit",
    )


class _Model(BaseModel):
    # allow_inf_nan=False: no field may be inf or NaN (`max_p99_ms: .inf` is refused)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SecretValue(_Model):
    """An env value that must never be written to logs, state, audit or reports."""

    value: str
    secret: bool = True


# An image reference with `{version}` where the version goes, e.g. `app:{version}` or
# `registry.example/team/app:{version}`: what container runtimes start.
ImageTemplate = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9._/:-]*\{version\}[A-Za-z0-9._-]*$", max_length=255)
]


class Service(_Model):
    name: Name
    # The local runtime runs `command`; container runtimes run `image` at `port`.
    command: list[str] | None = Field(default=None, min_length=1)
    image: ImageTemplate | None = None
    port: int = Field(default=8080, ge=1, le=65535)
    health: UrlPath = "/healthz"
    replicas: int = Field(default=2, ge=1, le=32)
    version: Version
    env: dict[EnvName, str | SecretValue] = Field(default_factory=dict)
    chaos: bool = False
    start_timeout: Duration = 15.0

    @field_validator("command")
    @classmethod
    def _command_templates(cls, argv: list[str] | None) -> list[str] | None:
        if argv is None:
            return None
        for arg in argv:
            if "\n" in arg or "\x00" in arg:
                raise ValueError("command arguments cannot contain newlines or NUL bytes")
            for _, field_name, _, _ in string.Formatter().parse(arg):
                if field_name is not None and field_name not in _COMMAND_FIELDS:
                    raise ValueError(
                        f"unknown placeholder {{{field_name}}} in {arg!r}; "
                        "only {port} and {version} are filled in"
                    )
        return argv

    @field_validator("health")
    @classmethod
    def _no_parent_segments(cls, path: str) -> str:
        if ".." in path:
            raise ValueError("the health path cannot contain '..'")
        return path

    def image_for(self, version: str) -> str:
        if self.image is None:
            raise ValueError("service.image is not set")
        return self.image.replace("{version}", version)

    def plain_env(self) -> dict[str, str]:
        return {k: v.value if isinstance(v, SecretValue) else v for k, v in self.env.items()}

    def secret_values(self) -> list[str]:
        return [v.value for v in self.env.values() if isinstance(v, SecretValue) and v.secret]


class Traffic(_Model):
    listen: str = "127.0.0.1:8080"
    canary_header: HeaderName = "X-Canary"
    sticky_cookie: CookieName | None = None
    # A response header naming the track that served the request; off by default, since
    # with the deterministic split it tells a client which track its next request hits.
    track_header: HeaderName | None = None
    # The service's paths the public listener never serves (the path and all below it).
    private_paths: list[PrivatePath] = Field(default=["/metrics", "/chaos"], max_length=32)
    drain: Duration = 1.0

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        match = _LISTEN.match(listen)
        if not match:
            raise ValueError(f"{listen!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
        if not 1 <= int(match.group("port")) <= 65535:
            raise ValueError(f"port {match.group('port')} is outside 1-65535")
        return listen

    @field_validator("track_header")
    @classmethod
    def _not_a_standard_header(cls, name: str | None) -> str | None:
        # nginx would send it beside the real one: two Content-Lengths break responses.
        if name is not None and name.lower() in _STANDARD_RESPONSE_HEADERS:
            raise ValueError(f"{name} is a standard response header; choose another name")
        return name

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class Load(_Model):
    """Load generated with `hey` during a step, like Flagger's load tester."""

    rps: int = Field(default=50, ge=1, le=2000)
    concurrency: int = Field(default=4, ge=1, le=256)
    path: UrlPath = "/"


def _interval(value: object) -> float | str:
    return "auto" if value == "auto" else parse_duration(value)


Interval = Annotated[
    float | Literal["auto"],
    BeforeValidator(_interval, json_schema_input_type=DurationInput | Literal["auto"]),
]


def _warmup(value: object) -> object:
    """`warmup: 60s` is a time alone; `off` (or 0) is no warm-up; a mapping is itself."""
    if value in ("off", False, 0):
        return {"time": 0, "requests": 0}
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return {"time": value, "requests": 0}
    return value


class Warmup(_Model):
    """The canary's first moments, which are not evidence of a latency regression: JIT,
    caches and connection pools make every new process slow at first. Latency is
    measured but not tested until both have passed since the canary (re)started; errors
    are tested from the first request. Fixed when the canary starts, so the tests stay
    valid (what is left out is chosen by time and count, never by the latencies)."""

    time: Duration = 60.0
    requests: int = Field(default=300, ge=0, le=10_000_000)

    @property
    def off(self) -> bool:
        return self.time <= 0 and self.requests <= 0

    def seconds_at(self, canary_rps: float) -> float:
        """How long it lasts at this canary rate: its time, or its requests, if later."""
        return max(self.time, self.requests / canary_rps)

    def describe(self) -> str:
        parts = []
        if self.time > 0:
            parts.append(format_duration(self.time))
        if self.requests > 0:
            parts.append(f"{self.requests} canary requests")
        return " and ".join(parts) or "off"


WarmupSetting = Annotated[
    Warmup,
    BeforeValidator(_warmup, json_schema_input_type=Warmup | DurationInput | Literal["off"]),
]


class Analysis(_Model):
    # "auto": a look after about five canary requests, between 0.25 s and 2 s, so
    # detection keeps up with busy services and quiet ones are not polled for nothing.
    interval: Interval = "auto"
    # Every step runs at least this long, so a step at a new weight is watched under
    # its own traffic even when an earlier step already supplied the evidence.
    min_duration: Duration = 30.0
    # Still undecided after this long: the rollout holds (it waits, with the evidence
    # kept, for `resume`, `promote` or `rollback`). Lack of evidence never rolls back.
    max_duration: Duration = 600.0
    load: Load | None = None
    # The canary's cold start: latency is not tested until this much time and this many
    # canary requests have passed since it (re)started. Read from strategy.canary.analysis
    # only (it is about the canary, not a step).
    warmup: WarmupSetting = Field(default_factory=Warmup)

    @model_validator(mode="after")
    def _durations_ordered(self) -> Analysis:
        if self.max_duration < self.min_duration:
            raise ValueError("max_duration must be at least min_duration")
        if self.max_duration <= 0:
            raise ValueError("max_duration must be positive")
        if self.interval != "auto" and not 0.05 <= self.interval <= 3600:
            raise ValueError("interval must be auto or between 50ms and 1h")
        return self


def _pause(value: object) -> float | str:
    return "manual" if value == "manual" else parse_duration(value)


Pause = Annotated[
    float | Literal["manual"],
    BeforeValidator(_pause, json_schema_input_type=DurationInput | Literal["manual"]),
]


class Step(_Model):
    # Below 100: after the last step passes, the canary is promoted to stable. A step
    # at 100% would leave no stable traffic to compare the canary with.
    weight: int = Field(ge=0, le=100)
    pause: Pause | None = None
    analysis: Analysis | None = None

    @field_validator("analysis")
    @classmethod
    def _no_warmup_per_step(cls, analysis: Analysis | None) -> Analysis | None:
        if analysis is not None and "warmup" in analysis.model_fields_set:
            raise ValueError(
                "warmup is the canary's, not a step's: set it once in"
                " strategy.canary.analysis.warmup and delete it here"
            )
        return analysis

    @field_validator("weight")
    @classmethod
    def _below_full(cls, weight: int) -> int:
        if weight == 100:
            raise ValueError(
                "a step's weight must be below 100: after the last step passes, the canary"
                " is promoted to 100% (a step at 100% leaves no stable traffic to compare)"
            )
        return weight


class CanaryStrategy(_Model):
    replicas: int = Field(default=1, ge=1, le=32)
    steps: list[Step] = Field(
        default_factory=lambda: [Step(weight=10), Step(weight=25), Step(weight=50)],
        min_length=1,
    )
    analysis: Analysis = Field(default_factory=Analysis)

    @field_validator("steps")
    @classmethod
    def _weights_increase(cls, steps: list[Step]) -> list[Step]:
        weights = [s.weight for s in steps]
        if weights[0] == 0:
            raise ValueError("the first step's weight must be above 0")
        for previous, current in itertools.pairwise(weights):
            if current <= previous:
                raise ValueError(f"step weights must increase, got {previous} then {current}")
        return steps

    def analysis_for(self, step: Step) -> Analysis:
        return step.analysis or self.analysis


class Strategy(_Model):
    canary: CanaryStrategy = Field(default_factory=CanaryStrategy)


# The PromQL templates the prometheus provider renders, and the variables they get.
QUERY_NAMES = ("requests", "errors", "error_rate", "buckets", "quantile", "p99")
QUERY_SAMPLE = {"track": "canary", "window": "30000ms", "q": 0.99}
# Kubernetes templates also get `namespace` and `service` (labels namespace, app, track).
KUBE_QUERY_SAMPLE = {**QUERY_SAMPLE, "namespace": "default", "service": "app"}


def rendering_queries(queries: dict[str, str], sample: dict[str, object]) -> dict[str, str]:
    """`queries` if each names a known query and compiles and renders in the sandbox with
    `sample`'s variables, so a template error shows at `validate`, and a template can
    reach nothing but its documented variables; else the ValueError saying which."""
    from swiftdeploy.promql import render_query

    for name, text in queries.items():
        if name not in QUERY_NAMES:
            raise ValueError(f"unknown query {name!r}; known: {', '.join(QUERY_NAMES)}")
        try:
            render_query(text, **sample)
        except ValueError as exc:
            raise ValueError(f"query {name!r}: {exc}") from None
    return queries


class PrometheusSettings(_Model):
    url: str | None = Field(default=None, max_length=2048)
    scrape_interval: PositiveDuration = 1.0
    queries: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict)

    @field_validator("queries")
    @classmethod
    def _templates_render(cls, queries: dict[str, str]) -> dict[str, str]:
        return rendering_queries(queries, KUBE_QUERY_SAMPLE)


class Metrics(_Model):
    # nginx: counted by the router itself, so the canary under test cannot misreport
    # its own errors or latency, and every request a client got is counted.
    provider: ProviderName = "nginx"
    window: Duration = 30.0
    quantiles: list[Fraction] = Field(default_factory=lambda: [0.5, 0.9, 0.99])
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)


class Thresholds(_Model):
    """Absolute limits. The canary limits are tested sequentially (evidence that the
    canary's rate is above the limit), never as point estimates checked at each look."""

    max_error_rate: float = Field(default=0.01, gt=0, lt=1)
    max_p99_ms: float = Field(default=500.0, gt=0, le=600_000)
    min_disk_free_gb: float = Field(default=1.0, ge=0, le=1_000_000)
    max_load_per_core: float = Field(default=4.0, gt=0, le=10_000)
    min_mem_available_pct: float = Field(default=5.0, ge=0, le=100)


_POINTS = re.compile(r"^\+\s*(?P<value>\d+(?:\.\d+)?)\s*(%|points?|pts?)$")
_RATIO = re.compile(r"^[x\u00d7]\s*(?P<value>\d+(?:\.\d+)?)$")
_PLUS_MS = re.compile(r"^\+\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)$")


class ErrorRegression(_Model):
    """The smallest rise in the canary's error rate worth catching: `+1%` (one
    percentage point above the stable's rate) or `x2` (twice the stable's rate)."""

    kind: Literal["points", "ratio"]
    value: float  # a fraction for points (0.01), a factor for ratio (2.0)

    @property
    def text(self) -> str:
        if self.kind == "ratio":
            return f"x{self.value:g}"
        points = self.value * 100
        return f"+{points:g} point" + ("" if points == 1 else "s")


def _error_regression(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if match := _POINTS.match(text):
        points = float(match.group("value"))
        if not 0 < points < 100:
            raise ValueError("an error regression in points must be between 0 and 100, e.g. +1%")
        return {"kind": "points", "value": points / 100}
    if match := _RATIO.match(text):
        factor = float(match.group("value"))
        if not 1 < factor <= 1000:
            raise ValueError("an error regression ratio must be above 1 (and at most 1000)")
        return {"kind": "ratio", "value": factor}
    raise ValueError(f"{value!r} is not an error regression; write +1% (points) or x2 (ratio)")


def _latency_regression(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = _PLUS_MS.match(value.strip().lower())
    if not match:
        raise ValueError(f"{value!r} is not a latency regression; write it like +100ms")
    ms = float(match.group("value")) * (1000 if match.group("unit") == "s" else 1)
    if not 0 < ms <= 600_000:
        raise ValueError("a latency regression must be above 0 and at most 10 minutes")
    return ms


# The schema's view of what `_error_regression` and `_latency_regression` read (any case).
ErrorRegressionInput = (
    ErrorRegression
    | Annotated[
        str,
        Field(
            pattern=r"^\s*(\+\s*\d+(\.\d+)?\s*(%|[Pp][Oo][Ii][Nn][Tt][Ss]?|[Pp][Tt][Ss]?)"
            r"|[xX\u00d7]\s*\d+(\.\d+)?)\s*$"
        ),
    ]
)
LatencyRegressionInput = (
    Annotated[str, Field(pattern=r"^\s*\+\s*\d+(\.\d+)?\s*([Mm][Ss]|[Ss])\s*$")]
    | Annotated[float, Field(gt=0, le=600_000)]
)


class Detect(_Model):
    """The smallest regressions worth catching, in users' terms."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    errors: Annotated[
        ErrorRegression,
        BeforeValidator(_error_regression, json_schema_input_type=ErrorRegressionInput),
    ] = Field(default_factory=lambda: ErrorRegression(kind="points", value=0.01))
    # Added to the stable's p99: the canary's p99 at stable p99 + this is a regression.
    latency_ms: Annotated[
        float,
        Field(gt=0, le=600_000),
        BeforeValidator(_latency_regression, json_schema_input_type=LatencyRegressionInput),
    ] = Field(default=100.0, alias="latency")


class OpaSettings(_Model):
    url: str | None = None
    timeout: Duration = 2.0


class Policy(_Model):
    engine: EngineName = "embedded"
    directory: str = "policies"
    # The chance that a healthy canary (no worse than stable) is rolled back, per rollout.
    alpha: float = Field(default=0.01, ge=1e-6, le=0.5)
    # The chance that a regression of the size in `detect` is promoted: power is 1 - beta.
    beta: float = Field(default=0.1, ge=0.001, le=0.5)
    detect: Detect = Field(default_factory=Detect)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    opa: OpaSettings = Field(default_factory=OpaSettings)

    @field_validator("directory")
    @classmethod
    def _relative_dir(cls, directory: str) -> str:
        return relative_path(directory, "the policy directory")


class Audit(_Model):
    path: str = ".swiftdeploy/history.jsonl"
    max_bytes: int = Field(default=10_000_000, ge=4096, le=1_000_000_000)

    @field_validator("path")
    @classmethod
    def _inside_project(cls, path: str) -> str:
        return relative_path(path, "the audit path")


# A DNS-1123 label: what Kubernetes accepts as a namespace or an object's name.
KubeName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]


class GatewayRef(_Model):
    """The Gateway the service's HTTPRoute attaches to."""

    name: KubeName = "swiftdeploy-gw"
    namespace: KubeName = "gateway"


class Kubernetes(_Model):
    namespace: KubeName = "default"
    # A kubeconfig context; None: the current one (`--kube-context` overrides both).
    context: str | None = Field(default=None, min_length=1, max_length=253)
    gateway: GatewayRef = Field(default_factory=GatewayRef)


# --- notifications and gating webhooks (docs/notifications.md) ---------------------------


class EnvSecret(_Model):
    """A secret read from the driver's environment when it starts (a URL, a token)."""

    env: EnvName


class KubeSecret(_Model):
    """A secret read from a key of a Kubernetes Secret in the service's namespace (the
    driver in the cluster reads it; `kube rbac` grants that one Secret)."""

    secret: KubeName
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")]


SecretRef = EnvSecret | KubeSecret
# A receiver's address: written here when it is no secret (an internal smoke test), or
# from a secret (a Slack or Teams incoming-webhook URL is a credential). Never logged.
WebhookUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
UrlSetting = WebhookUrl | EnvSecret | KubeSecret
# Which events a sink gets: `*`, an area (`rollout.*`), or one (`rollout.rolled-back`).
EventPattern = Annotated[str, Field(pattern=r"^(\*|[a-z]+\.(\*|[a-z-]+))$")]
HOOK_TYPES = (
    "pre-rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
)
HookType = Literal[
    "pre-rollout", "confirm-traffic-increase", "confirm-promotion", "post-rollout", "rollback"
]


class Sink(_Model):
    """Where notifications go: a Slack-compatible or MS Teams incoming webhook, or a
    generic JSON webhook that receives the event itself."""

    name: Name
    kind: Literal["slack", "teams", "webhook"]
    url: UrlSetting
    headers: dict[HeaderName, str | EnvSecret | KubeSecret] = Field(
        default_factory=dict, max_length=16
    )
    events: list[EventPattern] = Field(default=["*"], min_length=1, max_length=64)


class Notifications(_Model):
    # HMAC-SHA256 key that signs every delivery and every hook call (the receiver checks
    # the X-SwiftDeploy-Signature header with it); required once a sink or hook exists.
    signing_key: EnvSecret | KubeSecret | None = None
    # Where people read a rollout's report, `{service}` and `{rollout_id}` filled in.
    report_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = None
    timeout: PositiveDuration = 5.0  # one delivery attempt
    retries: int = Field(default=8, ge=0, le=100)  # then a dead letter
    backoff: PositiveDuration = 1.0  # before the first retry; doubles, at most 5 min
    sinks: list[Sink] = Field(default_factory=list, max_length=16)

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, sinks: list[Sink]) -> list[Sink]:
        _require_unique([sink.name for sink in sinks], "notifications.sinks")
        return sinks


class Hook(_Model):
    """A team's own check that takes part in the decision (Flagger's webhooks):
    `pre-rollout` (non-2xx stops the rollout before traffic moves),
    `confirm-traffic-increase` and `confirm-promotion` (the rollout holds until it answers
    2xx), `post-rollout` and `rollback` (informational). Timeouts and errors fail closed."""

    name: Name
    type: HookType
    url: UrlSetting
    headers: dict[HeaderName, str | EnvSecret | KubeSecret] = Field(
        default_factory=dict, max_length=16
    )
    timeout: PositiveDuration = 10.0  # one call
    retries: int = Field(default=2, ge=0, le=20)  # after a timeout, an error or a 5xx
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]] = (
        Field(default_factory=dict, max_length=32)
    )


def _require_unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{where}: the name {name!r} is used twice; names must be unique")
        seen.add(name)


class Manifest(_Model):
    api_version: Literal["swiftdeploy/v1"] = Field(alias="apiVersion")
    # What runs the replicas (`swiftdeploy.runtime.backend`).
    runtime: RuntimeName = "local"
    service: Service
    traffic: Traffic = Field(default_factory=Traffic)
    strategy: Strategy = Field(default_factory=Strategy)
    metrics: Metrics = Field(default_factory=Metrics)
    policy: Policy = Field(default_factory=Policy)
    audit: Audit = Field(default_factory=Audit)
    kubernetes: Kubernetes = Field(default_factory=Kubernetes)
    notifications: Notifications = Field(default_factory=Notifications)
    hooks: list[Hook] = Field(default_factory=list, max_length=16)

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, hooks: list[Hook]) -> list[Hook]:
        _require_unique([hook.name for hook in hooks], "hooks")
        return hooks

    @model_validator(mode="after")
    def _webhooks_signed(self) -> Manifest:
        # model-level (sinks and hooks both need the key, a Secret needs the runtime);
        # each message starts with its field, which `friendly_error` turns into its line
        if (self.notifications.sinks or self.hooks) and self.notifications.signing_key is None:
            raise ValueError(
                "notifications.signing_key: required once a sink or hook is declared (every"
                " delivery and hook call is signed), e.g."
                " signing_key: {env: SWIFTDEPLOY_SIGNING_KEY}"
            )
        if self.runtime != "kubernetes":
            for field, ref in self.secret_fields():
                if isinstance(ref, KubeSecret):
                    raise ValueError(
                        f"{field}: a Kubernetes Secret needs runtime: kubernetes (this is"
                        f" runtime: {self.runtime}); use {{env: NAME}}"
                    )
        return self

    def secret_fields(self) -> list[tuple[str, EnvSecret | KubeSecret]]:
        """Every secret notifications and hooks read, with the field that names it
        (`notifications.sinks[0].url`): the driver resolves these at start."""
        found: list[tuple[str, EnvSecret | KubeSecret]] = []
        if self.notifications.signing_key is not None:
            found.append(("notifications.signing_key", self.notifications.signing_key))
        sinks = self.notifications.sinks
        receivers: list[tuple[str, Sink | Hook]] = [
            *((f"notifications.sinks[{i}]", sink) for i, sink in enumerate(sinks)),
            *((f"hooks[{i}]", hook) for i, hook in enumerate(self.hooks)),
        ]
        for where, receiver in receivers:
            settings = [("url", receiver.url)]
            settings += [(f"headers.{name}", value) for name, value in receiver.headers.items()]
            for field, value in settings:
                if isinstance(value, EnvSecret | KubeSecret):
                    found.append((f"{where}.{field}", value))
        return found

    def secret_refs(self) -> list[EnvSecret | KubeSecret]:
        """Every secret notifications and hooks read: the driver resolves these at start."""
        return [ref for _, ref in self.secret_fields()]

    @model_validator(mode="after")
    def _runnable(self) -> Manifest:
        if self.runtime == "local" and self.service.command is None:
            raise ValueError("service.command is required by the local runtime")
        if self.runtime == "local" and PORT_ENV in self.service.env:
            raise ValueError(
                f"service.env.{PORT_ENV}: the local runtime gives each replica its own port"
                f" in {PORT_ENV}; remove it"
            )
        if self.runtime in ("docker", "kubernetes") and self.service.image is None:
            raise ValueError(f"service.image is required by the {self.runtime} runtime")
        if self.runtime == "kubernetes" and not (
            self.metrics.provider == "prometheus" and self.metrics.prometheus.url
        ):
            raise ValueError(
                "the kubernetes runtime reads metrics from the cluster's Prometheus: set"
                " metrics.provider: prometheus and metrics.prometheus.url"
            )
        if self.runtime != "kubernetes":
            self._queries_need_no_kube_labels()
        return self

    def _queries_need_no_kube_labels(self) -> None:
        from swiftdeploy.promql import render_query

        for name, text in self.metrics.prometheus.queries.items():
            try:
                render_query(text, **QUERY_SAMPLE)
            except ValueError:
                raise ValueError(
                    f"metrics.prometheus.queries: query {name!r} uses namespace or service,"
                    f" which only runtime: kubernetes fills in (this is runtime: {self.runtime})"
                ) from None


class LoadedManifest(BaseModel):
    """A validated manifest with where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: Manifest
    path: Path
    lines: dict[str, int] = Field(default_factory=dict)

    def where(self, field: str) -> str:
        """`file:line: field` for messages about a value that is valid YAML but unusable here."""
        line = self.lines.get(field)
        return f"{self.path}:{line}: {field}" if line else f"{self.path}: {field}"

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".swiftdeploy"


# A manifest is a page of settings: these bound what reading one may cost, so a YAML
# bomb (aliases that expand exponentially, or deep nesting) is refused at once.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_ALIASES = 64
MAX_DEPTH = 32
MAX_EXPANDED_NODES = 20_000
# Characters a project path may have: it is written into nginx and supervisord configs.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/@+,:~ -]+$")


def read_settings_file(
    path: Path, noun: str, missing_hint: str
) -> tuple[dict[str, Any], dict[tuple[str | int, ...], int]]:
    """A settings file (the manifest, the judge's config) read as bounded YAML: its data
    and each key's line; a missing, unreadable, oversized or non-UTF-8 file is
    one ManifestError naming it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: {noun} not found", hint=missing_hint) from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read {noun}: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path}: the {noun} is {len(raw)} bytes, more than {MAX_MANIFEST_BYTES}",
            hint=f"a {noun} is a page of settings; is this the right file?",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return _parse_yaml(path, text)


def load_manifest(path: Path) -> LoadedManifest:
    """Load and validate; every failure is one ManifestError naming file, line and field."""
    path = path.resolve()
    data, lines = read_settings_file(path, "manifest", "run `swiftdeploy init` or pass -f FILE")
    _check_project_path(path)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise friendly_error(path, exc, lines) from None
    loaded = LoadedManifest(
        manifest=manifest, path=path, lines={_dotted(k): v for k, v in lines.items()}
    )
    _check_audit_path(loaded)
    return loaded


def _check_project_path(path: Path) -> None:
    project = str(path.parent)
    if not _SAFE_PATH.match(project):
        odd = sorted({c for c in project if not _SAFE_PATH.match(c)})
        raise ManifestError(
            f"{path}: the project's directory {project!r} contains {''.join(odd)!r}, which"
            " its nginx and supervisord configs cannot carry safely",
            hint="move the project to a path of letters, digits, spaces and ._/@+,:~-",
        )


def _check_audit_path(loaded: LoadedManifest) -> None:
    target = (loaded.project_dir / loaded.manifest.audit.path).resolve()
    if target == loaded.path or target.is_dir():
        raise ManifestError(
            f"{loaded.where('audit.path')}: {loaded.manifest.audit.path!r} is "
            + ("the manifest itself" if target == loaded.path else "a directory"),
            hint="name a file of its own, e.g. .swiftdeploy/history.jsonl",
        )


def _parse_yaml(path: Path, text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    try:
        _check_shape(path, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(path, node)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        context = exc.context_mark
        hint = (
            f"{exc.context} at line {context.line + 1}"
            if exc.context and context is not None
            else "fix the YAML syntax"
        )
        raise ManifestError(f"{where}: YAML syntax error: {exc.problem}", hint=hint) from None
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        flat = " ".join(str(exc).split())
        raise ManifestError(f"{path}: YAML error: {flat}", hint="fix the file's text") from None
    if not isinstance(data, dict):
        raise ManifestError(
            f"{path}: the manifest must be a mapping with apiVersion and service",
            hint="run `swiftdeploy init` for an example",
        )
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _index_lines(path, node, (), lines)
    return data, lines


def _check_shape(path: Path, text: str) -> None:
    """Aliases and nesting from the event stream, before any tree is built."""
    aliases = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if aliases > MAX_ALIASES:
            raise ManifestError(
                f"{path}:{line}: more than {MAX_ALIASES} YAML aliases",
                hint="write the values out; a manifest needs few anchors",
            )
        if depth > MAX_DEPTH:
            raise ManifestError(
                f"{path}:{line}: nested more than {MAX_DEPTH} deep",
                hint="a manifest is a few levels deep; is this the right file?",
            )


def _check_expansion(path: Path, root: yaml.Node) -> None:
    """How many nodes the document has once aliases are expanded, counted without
    expanding them (each distinct node once, memoised): a billion-laughs bomb is tiny
    on disk and astronomically large expanded."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = total = min(total, MAX_EXPANDED_NODES + 1)
        return total

    if size(root) > MAX_EXPANDED_NODES:
        raise ManifestError(
            f"{path}: the manifest expands to more than {MAX_EXPANDED_NODES} values"
            " through its YAML aliases",
            hint="write the values out instead of aliasing them",
        )


def _index_lines(
    path: Path, node: yaml.Node, at: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> None:
    """Record the line of every key and item, and refuse duplicate keys (YAML keeps the last)."""
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ManifestError(
                    f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}",
                    hint="keep one of them",
                )
            seen.add(key)
            lines[(*at, key)] = key_node.start_mark.line + 1
            _index_lines(path, value_node, (*at, key), lines)
            lines[(*at, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(path, item, (*at, index), lines)


def friendly_error(
    path: Path, exc: ValidationError, lines: dict[tuple[str | int, ...], int]
) -> ManifestError:
    errors = exc.errors()
    # `weigth: 25` is both an unknown key and a missing `weight`: the typo is the news
    missing = [e["loc"] for e in errors if e["type"] == "missing"]
    typos = [
        e
        for e in errors
        if e["type"] == "extra_forbidden"
        and difflib.get_close_matches(
            str(e["loc"][-1]), [str(m[-1]) for m in missing if m[:-1] == e["loc"][:-1]], cutoff=0.6
        )
    ]
    error = typos[0] if typos else errors[0]
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    field = _dotted(loc)
    line = _nearest_line(loc, lines)
    where = f"{path}:{line}" if line else str(path)
    removed = _REMOVED.get(str(loc[-1])) if loc else None
    if error["type"] == "extra_forbidden" and removed:
        message = f"{field}: {removed}"
        hint = "see the manifest reference in README.md"
    elif error["type"] == "extra_forbidden":
        message = f"unknown key {field!r}"
        close = difflib.get_close_matches(str(loc[-1]), known_keys(loc[:-1]), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {_dotted((*loc[:-1], close[0]))!r}?"
        hint = "check the spelling; `swiftdeploy schema` lists every key"
    elif error["type"] == "missing":
        message = f"missing required key {field!r}"
        hint = "add it; `swiftdeploy init` writes a complete example"
    else:
        message = f"{field}: {_clean(error['msg'])}"
        hint = "see the manifest reference in README.md"
        named = _NAMED_FIELD.match(_clean(error["msg"])) if not loc else None
        if named:  # a model-level check that names its field: that field's line
            message = _clean(error["msg"])
            line = _nearest_line(_path_of(named.group(1)), lines)
            where = f"{path}:{line}" if line else str(path)
    return ManifestError(f"{where}: {message}", hint=hint)


def known_keys(parent: tuple[str | int, ...]) -> list[str]:
    """The keys the manifest accepts under `parent` (`("service",)`: name, command, ...),
    read from its schema, so aliases and unions count as written."""
    schema = Manifest.model_json_schema(by_alias=True)
    definitions = schema.get("$defs", {})

    def alternatives(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found, stack = [], list(nodes)
        while stack:
            node = stack.pop()
            if "$ref" in node:
                stack.append(definitions[node["$ref"].rsplit("/", 1)[-1]])
            stack.extend(node.get("anyOf", []))
            found.append(node)
        return found

    nodes = [schema]
    for part in parent:
        key = "items" if isinstance(part, int) else None
        nodes = [
            child
            for node in alternatives(nodes)
            if (child := node.get(key) if key else node.get("properties", {}).get(part))
        ]
    return sorted({key for node in alternatives(nodes) for key in node.get("properties", {})})


# `notifications.sinks[1].url: ...`: a model-level error that starts with its field
_NAMED_FIELD = re.compile(r"^([a-z_]+(?:\.[A-Za-z0-9_-]+|\[\d+\])*): ")


def _path_of(dotted: str) -> tuple[str | int, ...]:
    """`notifications.sinks[1].url` -> ("notifications", "sinks", 1, "url")."""
    return tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", dotted))


def _is_union_tag(part: str | int) -> bool:
    # pydantic inserts the union member's type name into locations ("str", "SecretValue", ...)
    return isinstance(part, str) and (
        part in {"str", "float", "int", "SecretValue"} or part.startswith(("literal[", "function-"))
    )


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _nearest_line(
    loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")

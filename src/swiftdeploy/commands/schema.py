"""`swiftdeploy schema`: the manifest's JSON Schema (draft 2020-12), for editors and CI.

The shape comes from the pydantic models (`manifest.py`); what each key means comes from
`DESCRIPTIONS`, so an editor shows it on hover. A key without a description fails
tests/commands/test_schema.py, which also validates every manifest `init` writes.
What the models' cross-field validators require (`Manifest._runnable`, `_webhooks_signed`)
is stated as `if`/`then` rules (`RULES`), so an editor flags what `validate` refuses.
"""

from __future__ import annotations

from typing import Any

from swiftdeploy.manifest import PORT_ENV, Manifest

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://swiftdeploy.dev/schemas/manifest.v1.schema.json"

# "Model" describes a model; "Model.key" one of its keys (as written in the manifest).
DESCRIPTIONS = {
    "Manifest": "A SwiftDeploy project: the service, how its traffic is split, and how a"
    " canary is judged. Unknown keys are errors; durations are 500ms, 10s, 2m, 1h or 1m30s"
    " (or plain seconds).",
    "Manifest.apiVersion": "The manifest's format: swiftdeploy/v1.",
    "Manifest.runtime": "What runs the replicas: local (supervisord, loopback ports behind"
    " nginx), docker (containers behind nginx) or kubernetes (Deployments and an HTTPRoute).",
    "Manifest.service": "The service to run and roll out.",
    "Manifest.traffic": "The public listener and how requests are split between tracks.",
    "Manifest.strategy": "How a new version is rolled out.",
    "Manifest.metrics": "Where requests, errors and latency are counted.",
    "Manifest.policy": "The policy engine and what counts as a regression.",
    "Manifest.audit": "The hash-chained audit trail.",
    "Manifest.kubernetes": "Settings of runtime: kubernetes.",
    "Manifest.notifications": "Where rollout events are sent (Slack, Teams, webhooks).",
    "Manifest.hooks": "Gating webhooks that take part in the decision (Flagger's model).",
    "Service": "The service: how to run it, its health check and its stable version.",
    "Service.name": "Lowercase letters, digits and '-', at most 40.",
    "Service.command": "argv template run without a shell (runtime: local); {port} and"
    " {version} are filled in per replica, and the port is also in $PORT.",
    "Service.image": "Image template with {version} (runtime: docker or kubernetes),"
    " e.g. app:{version}.",
    "Service.port": "The port the image's service listens on in its container or pod.",
    "Service.health": "Health path; a replica gets traffic only after it answers 200.",
    "Service.replicas": "Stable replicas.",
    "Service.version": "The stable version `deploy` starts.",
    "Service.env": "KEY: value, or KEY: {value: ..., secret: true} (never logged).",
    "Service.chaos": "Start replicas with a chaos token (demo service only).",
    "Service.start_timeout": "How long a replica may take to pass its health check.",
    "SecretValue": "An env value that is never written to logs, state, audit or reports.",
    "SecretValue.value": "The value.",
    "SecretValue.secret": "Keep it out of every log and report.",
    "Traffic": "The public nginx listener and the split between stable and canary.",
    "Traffic.listen": "The public HOST:PORT nginx listens on.",
    "Traffic.canary_header": "A request header whose value always or never overrides the"
    " split (such requests are not counted).",
    "Traffic.sticky_cookie": "A cookie that pins a client to the track it first got"
    " (pinned requests are not counted).",
    "Traffic.track_header": "A response header naming the track that served the request.",
    "Traffic.private_paths": "Paths (and all below them) the public listener answers 404.",
    "Traffic.drain": "How long a replica leaving the routes keeps serving in-flight requests.",
    "Strategy": "How a new version is rolled out.",
    "Strategy.canary": "The canary strategy: replicas, steps and their analysis.",
    "CanaryStrategy": "A canary at increasing weights, each step judged on evidence.",
    "CanaryStrategy.replicas": "Canary replicas, the same number at every weight.",
    "CanaryStrategy.steps": "The steps, weights strictly increasing and below 100; after the"
    " last passes, the canary becomes stable.",
    "CanaryStrategy.analysis": "Defaults for every step's analysis.",
    "Step": "One step: the canary's weight, then an optional pause.",
    "Step.weight": "The canary's share of traffic in percent (1-99).",
    "Step.pause": "After the step passes: a duration, or manual to wait for `promote`.",
    "Step.analysis": "This step's analysis, in place of the strategy's.",
    "Analysis": "How a step is judged: how often to look, and for how long.",
    "Analysis.interval": "Time between looks; auto: after about 5 canary requests.",
    "Analysis.min_duration": "Every step runs at least this long at its weight.",
    "Analysis.max_duration": "Still undecided by then: the rollout holds (never rolls back"
    " for lack of evidence).",
    "Analysis.load": "Load to generate with `hey` during the step.",
    "Analysis.warmup": "The canary's cold start: latency is tested only after this (a time,"
    " {time, requests}, or off).",
    "Load": "Load generated with `hey` during a step, like Flagger's load tester.",
    "Load.rps": "Requests per second.",
    "Load.concurrency": "Concurrent connections.",
    "Load.path": "The path requested.",
    "Warmup": "The canary's first moments, not evidence of a latency regression.",
    "Warmup.time": "How long after the canary (re)starts.",
    "Warmup.requests": "How many canary requests after it (re)starts.",
    "Metrics": "Where requests, errors and latency are counted.",
    "Metrics.provider": "nginx (counted by the router), scrape (each replica's /metrics) or"
    " prometheus.",
    "Metrics.window": "What `metrics`, `status` and `rollout --plan` read: the last stretch"
    " of traffic.",
    "Metrics.quantiles": "Latency quantiles to show, as fractions.",
    "Metrics.prometheus": "Settings of the prometheus provider.",
    "PrometheusSettings": "The prometheus provider: a server and its queries.",
    "PrometheusSettings.url": "An existing Prometheus; none: one the runtime starts.",
    "PrometheusSettings.scrape_interval": "How often the started Prometheus scrapes.",
    "PrometheusSettings.queries": "PromQL templates that override the built-in ones, by name.",
    "Policy": "The policy engine and what a regression is.",
    "Policy.engine": "embedded (in-process Rego) or opa (a real OPA server).",
    "Policy.directory": "The Rego files, relative to the manifest.",
    "Policy.alpha": "The chance that a healthy canary is rolled back, per rollout.",
    "Policy.beta": "The chance that a regression of the detect size is promoted.",
    "Policy.detect": "The smallest regressions worth catching.",
    "Policy.thresholds": "Absolute limits on the canary and the host.",
    "Policy.opa": "Settings of engine: opa.",
    "Detect.errors": "+N% (points above the stable's error rate) or xN (times it).",
    "Detect.latency": "The canary's p99 this much above the stable's, e.g. +100ms.",
    "ErrorRegression.kind": "points (above the stable's rate) or ratio (times it).",
    "ErrorRegression.value": "A fraction for points (0.01), a factor for ratio (2).",
    "Thresholds.max_error_rate": "The canary's error rate limit, a fraction (0.01 = 1%).",
    "Thresholds.max_p99_ms": "The canary's p99 latency limit in milliseconds.",
    "Thresholds.min_disk_free_gb": "Free disk the host needs before deploy, canary, rollout.",
    "Thresholds.max_load_per_core": "The host's load per core allowed before starting.",
    "Thresholds.min_mem_available_pct": "Available memory the host needs, in percent.",
    "OpaSettings": "The OPA server.",
    "OpaSettings.url": "An existing OPA server; none: one SwiftDeploy starts.",
    "OpaSettings.timeout": "How long one decision may take.",
    "Audit": "The hash-chained audit trail.",
    "Audit.path": "The trail's file, relative to the project.",
    "Audit.max_bytes": "The size at which the trail rotates.",
    "Kubernetes": "Settings of runtime: kubernetes.",
    "Kubernetes.namespace": "Where the service's objects go.",
    "Kubernetes.context": "A kubeconfig context; none: the current one.",
    "Kubernetes.gateway": "The Gateway the service's HTTPRoute attaches to.",
    "GatewayRef.name": "The Gateway's name.",
    "GatewayRef.namespace": "The Gateway's namespace.",
    "EnvSecret.env": "The environment variable holding the secret.",
    "KubeSecret.secret": "The Secret's name, in the service's namespace.",
    "KubeSecret.key": "The key in the Secret.",
    "Notifications": "Where rollout events are sent, and how deliveries are retried.",
    "Notifications.signing_key": "The HMAC-SHA256 key that signs every delivery and hook"
    " call; required once a sink or hook is declared.",
    "Notifications.report_url": "Where people read a rollout's report ({service},"
    " {rollout_id} filled in).",
    "Notifications.timeout": "One delivery attempt.",
    "Notifications.retries": "Retries before a dead letter.",
    "Notifications.backoff": "The wait before the first retry; it doubles, at most 5 min.",
    "Notifications.sinks": "Where notifications go.",
    "Sink.name": "The sink's name, unique.",
    "Sink.kind": "slack, teams, or webhook (the event itself, as JSON).",
    "Sink.url": "The receiver's URL, or a secret holding it.",
    "Sink.headers": "Headers sent with each delivery (values may be secrets).",
    "Sink.events": "Which events: *, an area (rollout.*) or one (rollout.rolled-back).",
    "Hook.name": "The hook's name, unique.",
    "Hook.type": "When it is called, and whether it gates the rollout.",
    "Hook.url": "The hook's URL, or a secret holding it.",
    "Hook.headers": "Headers sent with each call (values may be secrets).",
    "Hook.timeout": "One call.",
    "Hook.retries": "Retries after a timeout, an error or a 5xx.",
    "Hook.metadata": "Key-value pairs sent with each call.",
}


def _at(*path: str, node: dict[str, Any]) -> dict[str, Any]:
    """`node` applied at `path` (a key of a key ...), each key on the way required."""
    for key in reversed(path):
        node = {"required": [key], "properties": {key: node}}
    return node


def _runtime_is(*names: str) -> dict[str, Any]:
    # an absent runtime is the default, local: `properties` holds for an absent key
    default = Manifest.model_fields["runtime"].default
    node: dict[str, Any] = {"properties": {"runtime": {"enum": list(names)}}}
    return node if default in names else {**node, "required": ["runtime"]}


# a KubeSecret is the object {secret, key} (an EnvSecret is {env}, a value a string)
_NOT_KUBE_SECRET = {"not": {"type": "object", "required": ["secret"]}}
_RECEIVER = {
    "properties": {"url": _NOT_KUBE_SECRET, "headers": {"additionalProperties": _NOT_KUBE_SECRET}}
}

# Manifest's model validators, each stated exactly (an editor shows the `then` that fails).
RULES: list[dict[str, Any]] = [
    {
        "description": "runtime: local runs service.command, and gives each replica its own"
        f" port in ${PORT_ENV}.",
        "if": _runtime_is("local"),
        "then": _at(
            "service",
            node={
                "required": ["command"],
                "properties": {
                    "command": {"type": "array"},
                    "env": {"not": {"required": [PORT_ENV]}},
                },
            },
        ),
    },
    {
        "description": "runtime: docker or kubernetes runs service.image.",
        "if": _runtime_is("docker", "kubernetes"),
        "then": _at("service", "image", node={"type": "string"}),
    },
    {
        "description": "runtime: kubernetes reads metrics from the cluster's Prometheus:"
        " metrics.provider: prometheus and metrics.prometheus.url.",
        "if": _runtime_is("kubernetes"),
        "then": {
            "allOf": [
                _at("metrics", "provider", node={"const": "prometheus"}),
                _at("metrics", "prometheus", "url", node={"type": "string", "minLength": 1}),
            ]
        },
    },
    {
        "description": "A Kubernetes Secret needs runtime: kubernetes; use {env: NAME}.",
        "if": {"not": _runtime_is("kubernetes")},
        "then": {
            "properties": {
                "notifications": {
                    "properties": {
                        "signing_key": _NOT_KUBE_SECRET,
                        "sinks": {"items": _RECEIVER},
                    }
                },
                "hooks": {"items": _RECEIVER},
            }
        },
    },
    {
        "description": "notifications.signing_key signs every delivery and hook call:"
        " required once a sink or hook is declared.",
        "if": {
            "anyOf": [
                _at("notifications", "sinks", node={"minItems": 1}),
                _at("hooks", node={"minItems": 1}),
            ]
        },
        "then": _at("notifications", "signing_key", node={"type": "object"}),
    },
]


def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema 2020-12, every titled node described."""
    schema = Manifest.model_json_schema(by_alias=True)
    _describe("Manifest", schema)
    for name, model in schema.get("$defs", {}).items():
        _describe(name, model)
    return {"$schema": DIALECT, "$id": SCHEMA_ID, **schema, "allOf": RULES}


def _describe(model: str, node: dict[str, Any]) -> None:
    # a docstring pydantic already copied wins: it is the model's own word
    if model in DESCRIPTIONS and "description" not in node:
        node["description"] = DESCRIPTIONS[model]
    for key, prop in node.get("properties", {}).items():
        text = DESCRIPTIONS.get(f"{model}.{key}")
        if text and "description" not in prop:
            prop["description"] = text

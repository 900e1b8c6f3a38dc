"""Bad manifests: each gives exit code 2, one line naming the field (and the line where
YAML gives one), no traceback, and nothing started."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from bench.support.project import Project
from bench.support.sim import init_manifest

from swiftdeploy.cli import run
from swiftdeploy.errors import ManifestError
from swiftdeploy.manifest import CanaryStrategy, Warmup, load_manifest
from swiftdeploy.ports import free_port

GOOD = """\
apiVersion: swiftdeploy/v1
service:
  name: demo
  command: ["swiftdeploy-demo", "--port", "{port}", "--version", "{version}"]
  version: v1
traffic:
  listen: 127.0.0.1:LISTEN
strategy:
  canary:
    steps:
      - weight: 10
      - weight: 50
"""

# (name, text replaced, replacement, words the error line must contain)
BAD = [
    ("yaml syntax", "  name: demo\n", "  name: [demo\n", ["YAML syntax", ":4", "at line 3"]),
    ("unknown top-level key", "traffic:\n", "trafic:\n", ["unknown key 'trafic'", ":6"]),
    (
        "unknown nested key",
        "  version: v1\n",
        "  version: v1\n  replica: 2\n",
        ["service.replica", ":6"],
    ),
    (
        "wrong type",
        "  version: v1\n",
        "  version: v1\n  replicas: two\n",
        ["service.replicas", ":6"],
    ),
    ("weight above 100", "weight: 50", "weight: 150", ["steps[1].weight", "100", ":12"]),
    ("negative weight", "weight: 10", "weight: -5", ["steps[0].weight", ":11"]),
    ("steps not increasing", "weight: 50", "weight: 5", ["steps", "must increase"]),
    ("first step zero", "weight: 10", "weight: 0", ["first step"]),
    (
        "missing service",
        "service:\n  name: demo\n",
        "other:\n  name: demo\n",
        ["missing required key 'service'"],
    ),
    ("wrong apiVersion", "swiftdeploy/v1", "swiftdeploy/v9", ["apiVersion", ":1"]),
    ("listen not host:port", "127.0.0.1:LISTEN", "localhost", ["traffic.listen", "HOST:PORT"]),
    ("port out of range", "127.0.0.1:LISTEN", "127.0.0.1:70000", ["traffic.listen", "65535"]),
    # the local runtime gives each replica its port in PORT (a command may read it there)
    (
        "PORT in env",
        "  version: v1\n",
        "  version: v1\n  env:\n    PORT: '8080'\n",
        ["service.env.PORT", "own port"],
    ),
    ("unknown placeholder", "{version}", "{release}", ["service.command", "{release}"]),
    (
        "header injection",
        "traffic:\n",
        'traffic:\n  canary_header: "X-C; rm -rf /"\n',
        ["canary_header"],
    ),
    (
        "header newline",
        "traffic:\n",
        'traffic:\n  canary_header: "X-C\\nfoo: bar"\n',
        ["canary_header"],
    ),
    ("cookie brace", "traffic:\n", 'traffic:\n  sticky_cookie: "a{b}"\n', ["sticky_cookie"]),
    (
        "track header injection",
        "traffic:\n",
        'traffic:\n  track_header: "X-T $host; return 200"\n',
        ["traffic.track_header"],
    ),
    (
        "track header standard",
        "traffic:\n",
        "traffic:\n  track_header: Content-Length\n",
        ["traffic.track_header", "standard response header"],
    ),
    (
        "health path traversal",
        "  version: v1\n",
        "  version: v1\n  health: /../etc\n",
        ["service.health", ".."],
    ),
    (
        "bad duration",
        "      - weight: 10\n",
        "      - weight: 10\n        pause: 10 parsecs\n",
        ["pause", "duration"],
    ),
    (
        "error rate above 1",
        "strategy:",
        "policy:\n  thresholds:\n    max_error_rate: 5\nstrategy:",
        ["max_error_rate"],
    ),
    (
        "duplicate key",
        "  version: v1\n",
        "  version: v1\n  version: v2\n",
        ["duplicate key 'version'", ":6"],
    ),
    ("not a mapping", None, "- just\n- a list\n", ["must be a mapping"]),
    (
        "audit path escapes",
        "strategy:",
        "audit:\n  path: ../../etc/passwd\nstrategy:",
        ["audit.path"],
    ),
    (
        "bad env name",
        "  version: v1\n",
        "  version: v1\n  env:\n    BAD-NAME: x\n",
        ["service.env"],
    ),
    ("service name injection", "name: demo", "name: 'demo;reboot'", ["service.name"]),
    # what passed `validate` before and ran code or crashed later
    (
        "query template runs code",
        "strategy:",
        "metrics:\n  prometheus:\n    queries:\n      requests: "
        "\"{{ cycler.__init__.__globals__.os.system('id') }}\"\nstrategy:",
        ["metrics.prometheus.queries", "query 'requests'", "template error"],
    ),
    (
        "query template does not compile",
        "strategy:",
        "metrics:\n  prometheus:\n    queries:\n      errors: '{{'\nstrategy:",
        ["query 'errors'", "template error"],
    ),
    (
        "query template names an unknown variable",
        "strategy:",
        "metrics:\n  prometheus:\n    queries:\n      errors: '{{ job }}'\nstrategy:",
        ["query 'errors'", "'job' is undefined"],
    ),
    (
        "unknown query name",
        "strategy:",
        "metrics:\n  prometheus:\n    queries:\n      latency: up\nstrategy:",
        ["unknown query 'latency'"],
    ),
    ("query with a kubernetes label on the local runtime", "strategy:",
     "metrics:\n  prometheus:\n    queries:\n      errors: 'up{namespace=\"{{ namespace }}\"}'"
     "\nstrategy:",
     ["query 'errors' uses namespace or service", "runtime: local"]),
    ("alpha zero", "strategy:", "policy:\n  alpha: 0\nstrategy:", ["policy.alpha"]),
    ("p99 infinite", "strategy:", "policy:\n  thresholds:\n    max_p99_ms: .inf\nstrategy:",
     ["policy.thresholds.max_p99_ms"]),
    ("duration infinite", "      - weight: 10\n", "      - weight: 10\n        pause: .inf\n",
     ["pause"]),
    ("audit path with NUL", "strategy:", 'audit:\n  path: "a\\0b"\nstrategy:',
     ["audit.path", "NUL"]),
    ("audit path empty", "strategy:", 'audit:\n  path: ""\nstrategy:', ["audit.path", "empty"]),
    ("audit path is the manifest", "strategy:", "audit:\n  path: swiftdeploy.yaml\nstrategy:",
     ["audit.path", "the manifest itself"]),
    ("policy directory absolute", "strategy:", "policy:\n  directory: /etc\nstrategy:",
     ["policy.directory", "inside the project"]),
    ("old on_timeout key", "      - weight: 10\n",
     "      - weight: 10\n        analysis:\n          on_timeout: rollback\n",
     ["on_timeout was removed", "never rolls back for lack of evidence"]),
    ("old statistics block", "strategy:", "policy:\n  statistics:\n    margin: 0.05\nstrategy:",
     ["policy.statistics was removed", "policy.detect"]),
    ("local runtime without a command",
     '  command: ["swiftdeploy-demo", "--port", "{port}", "--version", "{version}"]\n', "",
     ["service.command is required by the local runtime"]),
    ("image without a version placeholder", "  version: v1\n",
     "  version: v1\n  image: app:latest\n",
     ["service.image"]),
    ("image with shell characters", "  version: v1\n",
     "  version: v1\n  image: 'app:{version};id'\n",
     ["service.image"]),
    ("bad error regression", "strategy:", "policy:\n  detect:\n    errors: lots\nstrategy:",
     ["policy.detect.errors", "+1%"]),
]  # fmt: skip


def _write(root: Path, old: str | None, new: str, port: int) -> Path:
    text = GOOD.replace("LISTEN", str(port))
    text = new if old is None else text.replace(old.replace("LISTEN", str(port)), new)
    path = root / "swiftdeploy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "old", "new", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_refused_with_one_clear_line(
    short_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    old: str | None,
    new: str,
    words: list[str],
) -> None:
    # Given a manifest with one mistake
    path = _write(short_tmp, old, new, 18999)
    # When it is deployed
    code = run(["deploy", "-f", str(path)])
    # Then exit code 2, one line naming the problem, no traceback, and nothing started
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, lines
    assert "Traceback" not in captured.err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (short_tmp / ".swiftdeploy" / "supervisord.pid").exists()


def test_port_in_use_is_refused(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        path = _write(short_tmp, "", "", port)
        code = run(["deploy", "-f", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"swiftdeploy.yaml:7: traffic.listen: 127.0.0.1:{port} is already in use" in err
    assert not (short_tmp / ".swiftdeploy" / "supervisord.pid").exists()


def test_command_not_found_is_refused(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(short_tmp, '"swiftdeploy-demo"', '"no-such-program-xyz"', 18998)
    code = run(["canary", "v2", "-f", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "service.command: command 'no-such-program-xyz' not found" in err
    assert ":4:" in err
    assert not (short_tmp / ".swiftdeploy" / "supervisord.pid").exists()


def test_missing_manifest_points_at_init(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["validate", "-f", str(short_tmp / "nope.yaml")])
    assert code == 2
    assert "swiftdeploy init" in capsys.readouterr().err


def test_init_writes_a_manifest_that_validates(project: Project) -> None:
    loaded = load_manifest(project.manifest)
    assert loaded.manifest.service.replicas == 2
    assert [s.weight for s in loaded.manifest.strategy.canary.steps] == [10, 25, 50]
    done = project.cli("validate")
    assert "nginx: the rendered config is valid" in done.stdout


def test_init_refuses_to_overwrite(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["init", str(project.root)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_durations_and_pauses_parse(short_tmp: Path) -> None:
    path = _write(
        short_tmp,
        "      - weight: 10\n",
        "      - weight: 10\n        pause: manual\n      - weight: 20\n        pause: 1m\n",
        18997,
    )
    steps = load_manifest(path).manifest.strategy.canary.steps
    assert steps[0].pause == "manual"
    assert steps[1].pause == 60.0


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schema"]) == 0
    out = capsys.readouterr().out
    assert '"apiVersion"' in out
    assert '"additionalProperties": false' in out


@pytest.mark.parametrize(
    ("bomb", "words"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
                for p, n in zip("abcdefg", "bcdefgh", strict=False)
            ),
            "expands to more than",
        ),
        ("x: " + "[" * 5000 + "]" * 5000, "nested more than 32 deep"),
        ("x: " + "a" * 300_000, "more than 262144"),
        ("".join(f"k{i}: *a\n" for i in range(70)).replace("k0: *a", "k0: &a 1"),
         "more than 64 YAML aliases"),
    ],
    ids=["alias bomb", "deep nesting", "too big", "too many aliases"],
)  # fmt: skip
def test_a_yaml_bomb_is_refused_at_once(
    short_tmp: Path, capsys: pytest.CaptureFixture[str], bomb: str, words: str
) -> None:
    path = short_tmp / "swiftdeploy.yaml"
    path.write_text("apiVersion: swiftdeploy/v1\n" + bomb)
    started = time.monotonic()
    code = run(["validate", "-f", str(path)])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1
    assert words in err
    assert took < 5  # the bench measures it; the point is that it does not explode


@pytest.mark.parametrize("name", ["a;include evil.conf;#", 'quo"te', "dollar$x", "new\nline"])
def test_a_project_path_nginx_cannot_carry_is_refused(
    short_tmp: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    project = short_tmp / name
    project.mkdir()
    path = _write(project, None, GOOD.replace("LISTEN", "18998"), 18998)
    assert run(["validate", "-f", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot carry safely" in err
    assert not (project / ".swiftdeploy").exists()


def test_a_project_path_with_a_space_validates(short_tmp: Path) -> None:
    project = short_tmp / "my service"
    project.mkdir()
    path = _write(project, None, GOOD.replace("LISTEN", str(free_port())), 0)
    assert run(["validate", "-f", str(path)]) == 0


def test_warmup_forms_and_where_it_may_be_set(tmp_path: Path) -> None:
    analysis = CanaryStrategy().analysis
    assert (analysis.warmup.time, analysis.warmup.requests) == (60.0, 300)
    assert CanaryStrategy.model_validate({"analysis": {"warmup": "90s"}}).analysis.warmup == (
        Warmup(time=90, requests=0)
    )
    assert CanaryStrategy.model_validate({"analysis": {"warmup": "off"}}).analysis.warmup.off
    both = CanaryStrategy.model_validate({"analysis": {"warmup": {"time": "1m", "requests": 50}}})
    assert both.analysis.warmup.describe() == "1 min and 50 canary requests"
    # init writes the default out, so a user sees and can change it
    assert init_manifest(tmp_path).manifest.strategy.canary.analysis.warmup == Warmup()
    step = {"weight": 10, "analysis": {"warmup": "30s"}}
    with pytest.raises(ManifestError, match="warmup is the canary's, not a step's"):
        init_manifest(tmp_path, **{"strategy.canary.steps": [step]})


NOTIFY_BASE = """\
apiVersion: swiftdeploy/v1
service:
  name: demo
  command: ["swiftdeploy-demo", "--version", "{version}"]
  version: v1
notifications:
  timeout: 5s
  sinks:
    - name: oncall
      kind: slack
      url: {env: SLACK_URL}
    - name: team
      kind: teams
      url: SINK_URL
"""


@pytest.mark.parametrize(
    ("signing", "url", "expected"),
    [
        ("", "https://teams.example/x",
         ":6: notifications.signing_key: required once a sink or hook is declared"),
        ("  signing_key: {env: K}\n", "{secret: teams, key: url}",
         ":15: notifications.sinks[1].url: a Kubernetes Secret needs runtime: kubernetes"),
    ],
    ids=["no signing key", "a Secret on runtime local"],
)  # fmt: skip
def test_notification_errors_name_their_field_and_line(
    tmp_path: Path, signing: str, url: str, expected: str
) -> None:
    # Given a manifest whose notifications need something it lacks
    text = NOTIFY_BASE.replace("SINK_URL", url)
    path = tmp_path / "swiftdeploy.yaml"
    path.write_text(text.replace("  timeout: 5s\n", signing + "  timeout: 5s\n"))
    # When it is loaded, then the one line names the field and its line, not the top level
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert f"swiftdeploy.yaml{expected}" in caught.value.one_line(), caught.value.one_line()
    assert "(top level)" not in caught.value.one_line()


def test_inits_commented_notifications_and_hooks_validate_when_uncommented(
    tmp_path: Path,
) -> None:
    from swiftdeploy.commands.init import init_project
    from swiftdeploy.commands.validate import notification_checks

    # Given init's manifest, with its commented-out notifications and hooks uncommented
    init_project(tmp_path, "127.0.0.1:18080", force=True)
    path = tmp_path / "swiftdeploy.yaml"
    text = path.read_text()
    start = text.index("# notifications:\n")
    example = [line.removeprefix("# ") for line in text[start:].splitlines()]
    assert {"notifications:", "hooks:"} <= set(example)
    path.write_text(text[:start] + "\n".join(example) + "\n")
    # Then it validates, with a sink and two hooks
    loaded = load_manifest(path)
    notification_checks(loaded)
    assert [sink.name for sink in loaded.manifest.notifications.sinks] == ["oncall"]
    assert [hook.type for hook in loaded.manifest.hooks] == ["pre-rollout", "confirm-promotion"]

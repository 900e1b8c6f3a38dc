# Two entry points: `make demo` and `make test`. Both set everything up first and
# are idempotent: a re-run only checks stamps and binaries, so it takes seconds.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools/bin
OPA := $(TOOLS)/opa
OPA_VERSION := v1.22.3
KUBE := .tools/kube
ARGO := .tools/argo
FLAGGER := .tools/flagger
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/$(TOOLS):$(PATH)

.PHONY: setup test-setup system docker demo-image driver-image kube argo flagger demo test lint typecheck bench clean

# What SwiftDeploy runs on: nginx with lua, Prometheus, hey, supervisord (in the venv), OPA.
setup: system $(VENV)/.installed $(OPA)

# What the tests and benchmarks drive besides: a Docker engine with the demo image, a
# Kubernetes control plane, and Argo Rollouts and Flagger for the judge's e2e tests
# (`make demo` needs none of them, so it does not wait for them).
test-setup: setup docker demo-image kube argo flagger

# Debian's docker.io, and dockerd started in the background if it does not answer.
docker:
	@bash scripts/install-docker.sh

# The demo service's image for `runtime: docker` (cached: seconds once built).
demo-image: setup docker
	$(VENV)/bin/swiftdeploy demo-image

# The rollout driver's image that `swiftdeploy kube install` runs, on the demo image's
# base (no registry; about 30 s once the base is built, then cached by digest).
driver-image: setup docker demo-image
	$(VENV)/bin/swiftdeploy driver-image

system:
	@bash scripts/install-system.sh

$(VENV)/.installed: pyproject.toml | system
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# every extra: the tests drive all three runtimes
	$(PY) -m pip install --quiet -e '.[dev,docker,kubernetes]'
	@touch $@

$(OPA): scripts/install-opa.sh | system
	@bash scripts/install-opa.sh $(OPA_VERSION) $(TOOLS)

# The control plane the kubernetes tests start; the script checks its own version stamp,
# so a re-run costs one comparison (a cold build is about 15 minutes on 2 cores).
kube: | system
	@bash scripts/install-kube.sh $(KUBE)

# Argo Rollouts' controller and CRDs for the judge's e2e tests (tests/judge/test_argo_e2e.py);
# stamped like kube (a cold build takes 7 to 14 minutes on 2 cores, a rebuild seconds).
argo: | system
	@bash scripts/install-argo.sh $(ARGO)

# Flagger and its CRDs for the judge's Flagger e2e test (tests/judge/test_flagger_e2e.py);
# stamped the same way (a cold build takes about 6 minutes on 2 cores, a rebuild seconds).
flagger: | system
	@bash scripts/install-flagger.sh $(FLAGGER)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

test: test-setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(OPA) test policies/
	@# Two workers, a test file each: most of the suite's wall time is real time spent
	@# waiting (steps, probes, load), not CPU, so two files at once halve it on 2 cores.
	$(VENV)/bin/pytest -n 2 --dist loadfile --durations=25

demo: setup
	$(PY) scripts/demo.py

# The same on runtime: docker, the replicas as containers of the demo image.
.PHONY: demo-docker
demo-docker: setup docker demo-image
	$(PY) scripts/demo.py --runtime docker

# Every benchmark, one after another (never side by side: they would disturb each other).
bench: test-setup
	$(PY) bench/metrics_scrape.py
	$(PY) bench/measure_demo.py
	$(PY) bench/policy_latency.py
	$(PY) bench/detection.py
	$(PY) bench/rollouts.py
	$(PY) bench/startup.py
	$(PY) bench/e2e_detection.py
	$(PY) bench/fuzz.py
	$(PY) bench/soak.py
	$(PY) bench/docker_runtime.py
	$(PY) bench/kube.py

clean:
	rm -rf $(VENV) .tools .swiftdeploy build *.egg-info

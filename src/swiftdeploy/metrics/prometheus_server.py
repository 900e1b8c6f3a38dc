"""A local Prometheus server for the `prometheus` provider, run by the runtime.

Targets come from a file_sd file that SwiftDeploy rewrites whenever routes change;
every replica carries `track`, `version` and `replica` labels, which the default
queries select on. Prometheus re-reads the file by itself: no reload.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from swiftdeploy.errors import OperationalError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.state import State

CONFIG = """\
global:
  scrape_interval: {interval}ms
  scrape_timeout: {timeout}ms
  evaluation_interval: {interval}ms
scrape_configs:
  - job_name: swiftdeploy
    metrics_path: /metrics
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: 1s
"""


class PrometheusServer:
    def __init__(self, state_dir: Path, port: int, scrape_interval_s: float) -> None:
        self.dir = state_dir / "prometheus"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.scrape_interval_s = scrape_interval_s
        self.targets_path = self.dir / "targets.json"

    def prepare(self) -> ProcessSpec:
        private_dir(self.dir)
        private_dir(self.dir / "data")
        if not self.targets_path.exists():
            atomic_write(self.targets_path, "[]")
        interval = max(self.scrape_interval_s, 0.2)
        atomic_write(
            self.dir / "prometheus.yml",
            CONFIG.format(
                # Prometheus durations take whole units: 0.5s is written 500ms.
                interval=round(interval * 1000),
                timeout=round(min(interval, 1.0) * 1000),
                targets=self.targets_path,
            ),
        )
        binary = shutil.which("prometheus")
        if binary is None:
            raise OperationalError("prometheus is not installed", hint="run `make setup`")
        return ProcessSpec(
            name="prometheus",
            argv=[
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=6h",
                "--log.level=warn",
            ],
        )

    def write_targets(self, state: State) -> None:
        groups = [
            {
                "targets": [replica.endpoint],
                "labels": {
                    "track": replica.track,
                    "version": replica.version,
                    "replica": replica.name,
                },
            }
            for replica in state.replicas
        ]
        private_dir(self.dir)
        atomic_write(self.targets_path, json.dumps(groups))

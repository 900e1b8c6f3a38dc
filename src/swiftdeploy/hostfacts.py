"""What the infrastructure policy needs to know about this machine, measured now."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from swiftdeploy.errors import OperationalError

MEMINFO = Path("/proc/meminfo")


class HostFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    disk_free_gb: float
    load_per_core: float
    mem_available_pct: float
    cpu_count: int
    state_dir: str


def measure_host(state_dir: Path) -> HostFacts:
    """Disk free where the state lives, 1-minute load per core, memory available."""
    probe = state_dir if state_dir.exists() else state_dir.parent
    cpus = os.cpu_count() or 1
    try:
        meminfo = _meminfo_kib()
        mem_pct = 100.0 * meminfo["MemAvailable"] / meminfo["MemTotal"]
        free_gb = shutil.disk_usage(probe).free / 1e9
    except (OSError, KeyError, ZeroDivisionError) as exc:
        raise OperationalError(f"cannot measure the host: {exc}") from None
    return HostFacts(
        disk_free_gb=round(free_gb, 3),
        load_per_core=round(os.getloadavg()[0] / cpus, 3),
        mem_available_pct=round(mem_pct, 2),
        cpu_count=cpus,
        state_dir=str(state_dir),
    )


def _meminfo_kib() -> dict[str, int]:
    values = {}
    for line in MEMINFO.read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values

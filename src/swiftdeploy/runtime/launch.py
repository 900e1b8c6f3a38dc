"""Exec a process from a JSON launch file: `python -m swiftdeploy.runtime.launch FILE`.

supervisord's own `environment=` cannot carry a value holding both quote kinds, and
its config expands `%(...)s`; a 0600 JSON file carries argv and env exactly, and
exec keeps the pid supervisord watches.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    argv = [str(a) for a in spec["argv"]]
    env = {**os.environ, **{str(k): str(v) for k, v in spec["env"].items()}}
    os.execvpe(argv[0], argv, env)  # noqa: S606 - argv from our own launch file, no shell


if __name__ == "__main__":
    main()

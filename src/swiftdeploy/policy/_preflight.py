"""Compile policies with regopy in a throwaway process; run as a script by embedded.py.

rego-cpp 1.5.2 can abort the process on some valid Rego (an uncaught C++ exception),
so the embedded engine first compiles here: if anything dies, only this child does.
Ordinary compile errors are not reported here; the engine finds them in-process.

    python _preflight.py ENTRYPOINT[,ENTRYPOINT...] FILE...

prints "ok" once every module is loaded and every entrypoint built and evaluated once.
This file imports nothing from swiftdeploy, so the child starts in about 50 ms.
"""

from __future__ import annotations

import contextlib
import sys

import regopy


def main(argv: list[str]) -> int:
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE
    for path in argv[2:]:
        with (
            contextlib.suppress(regopy.RegoError, OSError, UnicodeDecodeError),
            open(path, encoding="utf-8") as file,
        ):
            interpreter.add_module(path, file.read())
    for entrypoint in argv[1].split(","):
        # Errors (not crashes) are the engine's to report; ValueError is regopy.Output
        # failing to parse an error result as JSON.
        with contextlib.suppress(regopy.RegoError, ValueError):
            bundle = interpreter.build(None, [entrypoint])
            interpreter.set_input_term("{}")
            interpreter.query_bundle_entrypoint(bundle, entrypoint)
    print("ok")  # the parent process reads this line
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

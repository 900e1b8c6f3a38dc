"""A tiny third-party plugin: one part of each kind, registered as entry points.

An installed distribution would declare them in its pyproject.toml:

    [project.entry-points."swiftdeploy.runtimes"]
    example = "swiftdeploy_example_plugin.runtime"

Here the distribution is a `.dist-info` directory beside this package; a test puts
tests/plugins on sys.path, so `importlib.metadata` finds it as if it were installed.
"""

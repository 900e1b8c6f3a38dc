"""The instrumented demo service that `swiftdeploy init` deploys.
May import: nothing of swiftdeploy but the foundation (it runs as its own process).
"""

"""The instrumented demo service that `swiftdeploy init` deploys."""

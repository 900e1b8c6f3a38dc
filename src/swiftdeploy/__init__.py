"""SwiftDeploy: policy-gated progressive delivery."""

from __future__ import annotations

__version__ = "0.2.0"
DEFAULT_MANIFEST = "swiftdeploy.yaml"

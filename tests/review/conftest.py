"""The review's tests read trails written by tests/support/trails.py."""

from tests.support.trails import audit_keys, awkward, synthetic, trail_path

__all__ = ["audit_keys", "awkward", "synthetic", "trail_path"]

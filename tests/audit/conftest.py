"""The trail's tests write their trails with tests/support/trails.py."""

from tests.support.trails import audit_keys, trail_path

__all__ = ["audit_keys", "trail_path"]

"""Telling people and other systems: notifications to sinks (Slack, MS Teams, a generic
JSON webhook) from a persisted outbox, and the gating webhooks a rollout calls (hooks).
Both send through `http.post_signed`: signed, with an idempotency key, bounded."""

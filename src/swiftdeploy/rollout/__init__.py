"""The rollout engine: steps, looks, the sequential tests and their verdicts.
May import: fleet, the parts (metrics, policy, audit), the model and the foundation.
"""

"""How much traffic one replica carries at each step of a rollout. Pure.

The canary runs `strategy.canary.replicas` replicas at every weight, the stable keeps
`service.replicas`. Before the rollout each stable replica carries 1/service.replicas
of the traffic; at weight w each canary replica carries w% / canary.replicas. When that
is more than a stable replica carried before, the canary runs hotter than the service
ever ran, and it may look slower or fail for that reason alone, not because of its
code: `rollout --plan` says so, step by step, with the replica count that avoids it.
"""

from __future__ import annotations

from dataclasses import dataclass

from swiftdeploy.manifest import Manifest


@dataclass(frozen=True)
class StepLoad:
    """One step's traffic per replica, as shares of all the service's traffic (0-1),
    and in req/s when the service's rate is known."""

    index: int  # 0-based
    weight: int  # the canary's percent of the traffic
    canary_replicas: int
    stable_replicas: int
    service_rps: float | None = None

    @property
    def canary_share(self) -> float:
        """What one canary replica carries at this step."""
        return self.weight / 100 / self.canary_replicas

    @property
    def stable_share(self) -> float:
        """What one stable replica carries at this step."""
        return (100 - self.weight) / 100 / self.stable_replicas

    @property
    def before_share(self) -> float:
        """What one stable replica carried before the rollout (all the traffic)."""
        return 1 / self.stable_replicas

    @property
    def ratio(self) -> float:
        """One canary replica's load over one stable replica's before the rollout."""
        return self.weight * self.stable_replicas / (100 * self.canary_replicas)

    @property
    def overloaded(self) -> bool:
        """A canary replica carries more than a stable replica did before the rollout
        (compared in integers: equal is not more)."""
        return self.weight * self.stable_replicas > 100 * self.canary_replicas

    @property
    def replicas_needed(self) -> int:
        """The fewest canary replicas that carry no more than a stable replica did."""
        return max(1, -(-self.weight * self.stable_replicas // 100))

    def rps(self, share: float) -> float | None:
        """`share` of the service's traffic in req/s; None when the rate is not known."""
        return None if self.service_rps is None else self.service_rps * share

    def shown(self, share: float, noun: str = "") -> str:
        """`share` for people: `50%`, or `50%{noun} (25.0 req/s)` when the rate is known."""
        rate = self.rps(share)
        return percent(share) + noun + ("" if rate is None else f" ({rate:.1f} req/s)")

    def as_json(self) -> dict[str, float | int | bool | None]:
        return {
            "weight": self.weight,
            "canary_replicas": self.canary_replicas,
            "stable_replicas": self.stable_replicas,
            "canary_share_per_replica": self.canary_share,
            "stable_share_per_replica": self.stable_share,
            "stable_share_per_replica_before": self.before_share,
            "canary_rps_per_replica": self.rps(self.canary_share),
            "stable_rps_per_replica": self.rps(self.stable_share),
            "stable_rps_per_replica_before": self.rps(self.before_share),
            "canary_load_ratio": self.ratio,
            "overloaded": self.overloaded,
            "canary_replicas_needed": self.replicas_needed,
        }


def step_loads(
    weights: list[int],
    canary_replicas: int,
    stable_replicas: int,
    service_rps: float | None = None,
) -> tuple[StepLoad, ...]:
    """Each step's load per replica; `service_rps` is the service's total rate, if known."""
    if canary_replicas < 1 or stable_replicas < 1:
        raise ValueError("replica counts must be at least 1")
    return tuple(
        StepLoad(index, weight, canary_replicas, stable_replicas, service_rps)
        for index, weight in enumerate(weights)
    )


def manifest_loads(manifest: Manifest, service_rps: float | None = None) -> tuple[StepLoad, ...]:
    """step_loads for a manifest's steps and replica counts."""
    canary = manifest.strategy.canary
    weights = [step.weight for step in canary.steps]
    return step_loads(weights, canary.replicas, manifest.service.replicas, service_rps)


def percent(share: float) -> str:
    """A share (0-1) as a percentage with at most 3 significant digits: 50%, 12.5%, 33.3%."""
    return f"{share * 100:.3g}%"


def warning(load: StepLoad) -> str | None:
    """One line when a canary replica at this step carries more than a stable replica
    did before the rollout, naming the step, the ratio and the fix; else None."""
    if not load.overloaded:
        return None
    return (
        f"step {load.index + 1} (weight {load.weight}%): a canary replica would carry "
        f"{load.shown(load.canary_share, ' of the traffic')}, {load.ratio:.3g}x a stable "
        f"replica's {load.shown(load.before_share)} before the rollout "
        f"({load.canary_replicas} canary vs {load.stable_replicas} stable replicas); "
        f"raise strategy.canary.replicas to {load.replicas_needed}"
    )


def warnings(loads: tuple[StepLoad, ...]) -> list[str]:
    """warning() for every step that has one, in step order."""
    return [line for line in map(warning, loads) if line is not None]

"""How much more a track's events vary from look to look than independent draws would.

The harm tests (`sequential.log_e_harm`, `log_e_exceeds`) are exact when each request
fails (or is slow) on its own. Real replicas fail and stall in bursts: a garbage
collection or a bad half second makes many slow or failed requests at once on one
replica. Then a step's event count varies with how many episodes fell in it, not only
with binomial noise, and that variance does not shrink with traffic: at 200 canary
req/s, a canary whose one replica happened to stall four times in a minute while the
stable's two stalled twice each looks, to a test of independent draws, like a certain
regression (52% of healthy canaries were rolled back, where alpha is 1%).

So each track's events over the rollout, in blocks of BLOCK_S seconds, measure their
own spread: Pearson's dispersion statistic
    phi = sum over blocks of (x_b - n_b p)^2 / (n_b p (1 - p)) / (blocks - 1),
with p the track's event rate over those blocks, about 1 when events are independent and
the number of requests that fail together when they come in bursts (the design
effect of cluster sampling). A harm test's log e-value is divided by it, as a
quasi-likelihood divides a log-likelihood ratio by the dispersion: evidence is counted
in independent units, and with bursts those are the episodes, not the requests.

Why dividing keeps what held: for phi >= 1, log e / phi >= log(1/alpha) only where
log e >= log(1/alpha), so under independent events (whatever phi the data suggest) the
deflated test rolls back no more often than the exact one, at most alpha. Under bursts
it is the quasi-likelihood approximation, measured on whole rollouts in BENCHMARKS.md.
The estimate is shrunk toward 1 by `PRIOR_BLOCKS` blocks of independent data, so a few
blocks of ordinary binomial noise barely slow a test, while one burst among them (its
term grows with the square of its size) raises phi at once, in the block still open.
What remains assumed: a burst is shorter than a block, and the canary's bursts are no
more frequent per request than the stable's (more frequent ones are a regression).
Pure functions.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

# Blocks of independent data the estimate starts from. Pearson's statistic puts one
# burst of k events among T blocks at about k (T - 1), so phi is about k at once;
# a prior of b blocks scales that by (T - 1) / (T - 1 + b), which at the few blocks of
# a short step would leave most of a burst's events counted as independent. One block
# keeps the first two blocks of pure noise from reading as a burst, no more.
PRIOR_BLOCKS = 1.0
# Events are counted in blocks of at least this long, not per look: `interval: auto`
# looks every few canary requests, a fraction of a second at a busy service, and a
# burst spread over several looks would look like several independent ones.
BLOCK_S = 5.0
# Standard errors of phi's estimate taken off it (see Dispersion.factor).
NOISE_SE = 2.0
# When a spread is known (Dispersion.known): at least this many closed blocks, so that
# the NOISE_SE standard errors taken off phi's estimate, sqrt(2 / df) each with df =
# blocks - 1 + PRIOR_BLOCKS, come to at most 1 (df >= 2 NOISE_SE^2 = 8; with fewer,
# requests failing two or three at a time read as independent), and as many events:
# Pearson's statistic learns how events cluster only from events, and a track that
# has not failed yet may still fail in bursts.
KNOWN_BLOCKS = math.ceil(2 * NOISE_SE**2 + 1 - PRIOR_BLOCKS)
# Or this many closed blocks, with or without events: as much as the stable's history
# seeds its spread with (rollout.engine.HISTORY_S, five minutes); a track that served
# that long without failing is as known as a history would have made it.
HISTORY_BLOCKS = 60


class Dispersion(BaseModel):
    """One track's events for one test in time blocks: enough to compute phi."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocks: int = Field(default=0, ge=0)  # closed blocks that had requests
    events: int = Field(default=0, ge=0)  # in closed blocks
    requests: int = Field(default=0, ge=0)
    squares: float = Field(default=0.0, ge=0)  # sum over closed blocks of events^2 / requests
    open_events: int = Field(default=0, ge=0)  # the block being filled
    open_requests: int = Field(default=0, ge=0)
    open_s: float = Field(default=0.0, ge=0)

    def add(self, events: int, requests: int, seconds: float) -> Dispersion:
        """With one more look's counts, over `seconds`, in the open block; the block
        closes once it spans BLOCK_S."""
        update = {
            "open_events": self.open_events + events,
            "open_requests": self.open_requests + requests,
            "open_s": self.open_s + seconds,
        }
        grown = self.model_copy(update=update)
        if grown.open_s < BLOCK_S:
            return grown
        return grown._closed()

    def _closed(self) -> Dispersion:
        if self.open_requests <= 0:
            return self.model_copy(update={"open_events": 0, "open_s": 0.0})
        return Dispersion(
            blocks=self.blocks + 1,
            events=self.events + self.open_events,
            requests=self.requests + self.open_requests,
            squares=self.squares + self.open_events**2 / self.open_requests,
        )

    @property
    def known(self) -> bool:
        """Whether the closed blocks say enough about how events cluster to roll back
        on (KNOWN_BLOCKS blocks and as many events, or HISTORY_BLOCKS blocks)."""
        return self.blocks >= HISTORY_BLOCKS or min(self.blocks, self.events) >= KNOWN_BLOCKS

    @property
    def factor(self) -> float:
        """phi over the closed blocks and the open one, shrunk toward 1, less its own
        noise, and never below 1: 1 until there are two blocks and events in a track
        that does not fail every request."""
        whole = self._closed()
        if whole.blocks < 2 or whole.requests <= 0:
            return 1.0
        rate = whole.events / whole.requests
        if not 0.0 < rate < 1.0:
            return 1.0
        pearson = max(whole.squares - rate * whole.events, 0.0) / (rate * (1.0 - rate))
        freedom = whole.blocks - 1 + PRIOR_BLOCKS
        # With independent requests Pearson's statistic is chi-square: phi's estimate
        # has a standard error of sqrt(2 / df), so about half of them would read a
        # little above 1 and slow every test for nothing. Two standard errors off keeps
        # that to 1 in 40, and is nothing beside a burst's phi of tens.
        return max(1.0, (pearson + PRIOR_BLOCKS) / freedom - NOISE_SE * math.sqrt(2.0 / freedom))


def deflated(log_e: float, factor: float) -> float:
    """A harm test's log e-value counted in independent units: evidence for harm is
    divided by the dispersion, evidence against it is left as it is."""
    return log_e / factor if log_e > 0 else log_e

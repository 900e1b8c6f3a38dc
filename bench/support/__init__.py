"""What the benchmarks run on, shared with the tests that check the same behaviour: the
simulated service (`sim`), the host gate (`host`), hostile /metrics bodies and loopback
receivers. The tests import these from here; bench/ imports nothing of tests/support."""

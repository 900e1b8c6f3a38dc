"""What the benchmarks run on, shared with the tests that check the same behaviour: the
simulated service (`sim`), the host gate (`host`), hostile /metrics bodies, loopback
receivers, a project driven through the CLI (`project`), and the kubernetes control
plane (`kube`). The tests import these from here; bench/ imports nothing of tests/."""

"""`swiftdeploy driver-image`: the image `kube install` runs, built with no registry on
the demo's base, holding this SwiftDeploy and only its run-time packages."""

from __future__ import annotations

from swiftdeploy import __version__
from swiftdeploy.commands.driver_image import build_driver_image, distributions
from swiftdeploy.commands.kube_install import DRIVER_REPOSITORY
from tests.support.docker import engine

TAG = "test-image"


def test_the_driver_image_runs_this_swiftdeploy_with_its_run_time_packages_only() -> None:
    # Given the image built (or found up to date)
    client = engine()
    refs = build_driver_image([TAG], progress=lambda line: None)
    assert refs == [f"{DRIVER_REPOSITORY}:{TAG}"]

    # Then it holds what the driver imports (the kubernetes extra too), and none of the
    # development or docker extras
    names = distributions()
    assert {"kubernetes", "scipy", "pydantic", "regopy", "cryptography"} <= set(names)
    assert not {"pytest", "mypy", "ruff", "hypothesis", "docker"} & set(names)

    # and runs this version of the CLI, as no account of the host, with the driver's
    # modules (the rollout engine, the kubernetes backend) importable and the embedded
    # Rego engine's native library loading (it links a library the base lacks)
    said = client.containers.run(refs[0], ["swiftdeploy", "--version"], remove=True)
    assert said.decode().strip() == f"swiftdeploy {__version__}"
    client.containers.run(
        refs[0],
        ["python3", "-c", "import swiftdeploy.rollout.engine, swiftdeploy.runtime.kubernetes"],
        remove=True,
    )
    rego = "import regopy; print(regopy.Interpreter().query('x := 1 + 1'))"
    said = client.containers.run(refs[0], ["python3", "-c", rego], remove=True, user="10001")
    assert '"x":2' in said.decode().replace(" ", ""), said
    image = client.images.get(refs[0])
    assert image.attrs["Config"]["User"] == "10001:10001"

    # When it is asked for again with nothing changed, then the same image is kept
    build_driver_image([TAG], progress=lambda line: None)
    assert client.images.get(refs[0]).id == image.id

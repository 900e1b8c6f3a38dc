"""`swiftdeploy kube rbac`: what the kubernetes runtime needs from the cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import DEFAULT_PATH, ManifestOption, err, out, read_manifest

kube_app = typer.Typer(
    help="The kubernetes runtime's needs from the cluster.", no_args_is_help=True
)
app.add_typer(kube_app, name="kube")


@kube_app.command("rbac")
def rbac(
    manifest: ManifestOption = DEFAULT_PATH,
    subject: Annotated[
        str,
        typer.Option(help="Who the operators' RoleBinding binds: User/NAME, Group/NAME, ..."),
    ] = "Group/swiftdeploy-operators",
    driver_subject: Annotated[
        str | None,
        typer.Option(help="Who the driver's RoleBinding binds (default: its ServiceAccount)."),
    ] = None,
) -> None:
    """Print the two Roles the service needs in the manifest's namespace, the driver's
    and the operators', with RoleBindings: `kubectl apply -f -` them."""
    from swiftdeploy.commands.kube import rbac_yaml

    manifest_read = read_manifest(manifest).manifest
    out.print(rbac_yaml(manifest_read, subject, driver_subject), markup=False, end="")


@kube_app.command("install")
def install(
    manifest: ManifestOption = DEFAULT_PATH,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the YAML (for GitOps) instead of applying it.")
    ] = False,
    image: Annotated[
        str | None,
        typer.Option(help="The driver's image (default: `swiftdeploy driver-image`'s)."),
    ] = None,
) -> None:
    """Run the service's rollout driver in the cluster: its ServiceAccount, Role and
    RoleBinding, the project in a ConfigMap, and a Deployment running `swiftdeploy drive
    --controller`. Needs rights to create Roles in the namespace (a namespace admin)."""
    from swiftdeploy.commands.kube import require_kubernetes

    loaded = read_manifest(manifest)
    require_kubernetes(loaded.manifest, "kube install")
    from swiftdeploy.commands.kube_install import DEFAULT_IMAGE, install, install_yaml
    from swiftdeploy.runtime.kubernetes import kube_of

    if print_only:
        out.print(install_yaml(loaded, image or DEFAULT_IMAGE), markup=False, end="")
        return
    for line in install(kube_of(loaded), loaded, image or DEFAULT_IMAGE):
        out.print(f"applied {line}", markup=False)
    out.print(
        f"the driver of {loaded.manifest.service.name} starts in its pod; `swiftdeploy status`"
        " names it once it holds the service",
        markup=False,
    )


@app.command("driver-image")
def driver_image(
    tags: Annotated[
        list[str] | None, typer.Argument(help="Tags to build (default: this version).")
    ] = None,
) -> None:
    """Build the driver's image (swiftdeploy-driver:TAG), which `kube install` runs: this
    installation of SwiftDeploy on the demo's base image, no registry needed."""
    from swiftdeploy import __version__
    from swiftdeploy.commands.driver_image import build_driver_image

    refs = build_driver_image(tags or [__version__], lambda line: err.print(line, markup=False))
    out.print(f"ready: {' '.join(refs)}", markup=False)

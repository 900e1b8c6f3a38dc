"""`swiftdeploy kube rbac`: what the kubernetes runtime needs from the cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import DEFAULT_PATH, ManifestOption, load, out

kube_app = typer.Typer(
    help="The kubernetes runtime's needs from the cluster.", no_args_is_help=True
)
app.add_typer(kube_app, name="kube")


@kube_app.command("rbac")
def rbac(
    manifest: ManifestOption = DEFAULT_PATH,
    subject: Annotated[
        str,
        typer.Option(help="Who the RoleBinding example binds: User/NAME or ServiceAccount/NAME."),
    ] = "ServiceAccount/swiftdeploy",
) -> None:
    """Print the minimal Role (and a RoleBinding example) the CLI needs in the manifest's
    namespace (the default one without a manifest): `kubectl apply -f -` it."""
    from swiftdeploy.commands.kube import rbac_yaml

    namespace = load(manifest).manifest.kubernetes.namespace if manifest.is_file() else "default"
    out.print(rbac_yaml(namespace, subject), markup=False, end="")


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
    from swiftdeploy.commands.kube_install import DEFAULT_IMAGE, install, install_yaml
    from swiftdeploy.runtime.kubernetes import kube_of

    loaded = load(manifest)
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

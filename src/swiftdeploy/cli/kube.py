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

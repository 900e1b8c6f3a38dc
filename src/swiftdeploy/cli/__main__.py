"""`python -m swiftdeploy.cli`: how the supervisor starts the rollout's driver, with the
interpreter that runs this CLI (a console script's path may not exist where it runs)."""

from swiftdeploy.cli import main

main()

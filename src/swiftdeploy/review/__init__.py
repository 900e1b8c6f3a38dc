"""The review of the audit trail: its records told as rollouts, steps and decisions.
May import: the trail (`swiftdeploy.audit`), policy, state, manifest and the foundation;
nothing in the trail imports the review.

`explain` turns records into rollouts and plain-word reasons, read by `why`, `export`
and `report` (Markdown and self-contained HTML, `templates/`, with `charts`); `events`
projects the trail into CloudEvents. The `swiftdeploy audit` group lives in `cli/`.
"""

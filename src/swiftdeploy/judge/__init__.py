"""The judge: SwiftDeploy's canary judgement for a rollout another controller runs
(Argo Rollouts' `web` metric provider, Kargo's verification through it, Flagger's
webhooks). One sequential analysis per rollout revision, its evidence persisted
between calls, the canary policy deciding, every answer in the judge's own audit
trail. May import: rollout, metrics, policy, audit, notify, state, manifest and the
foundation (docs/architecture.md: the `judge` layer, below `commands`).
"""

"""One module per CLI verb: plain functions that take their dependencies and return data.
May import: rollout, judge, fleet, the parts, the model and the foundation; never cli.
"""

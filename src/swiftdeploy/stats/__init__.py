"""Pure statistics: counts in, numbers out; no I/O.
May import: nothing of swiftdeploy (numpy and scipy only).
"""

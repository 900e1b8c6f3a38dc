"""Pure statistics: counts in, numbers out; no I/O."""

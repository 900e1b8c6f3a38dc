"""Metrics providers: what a track served over a window, measured, never assumed."""

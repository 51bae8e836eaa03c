"""Evaluation: metrics, slice metrics and plot data (values in, values out)."""

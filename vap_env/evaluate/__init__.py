"""Metrics, policy evaluation and reports."""

"""Frozen test suites, evaluation of policies on them, and reports."""

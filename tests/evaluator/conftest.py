"""Fixtures of the evaluator tests; they and the helpers live in evaluator_testkit.py (a module name
that cannot collide with other folders' conftest.py when test modules import helpers from it)."""

from evaluator_testkit import fleet, proxy, small_fleet, small_proxy  # noqa: F401  (pytest fixtures)

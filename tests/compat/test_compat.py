"""The compatibility checks on the configured corpus (--data-dir / --config; default: the demo
corpus): the harness's one parametrized test over harness/suite.py's table of checks."""
from harness.pytest_suite import test_check  # noqa: F401

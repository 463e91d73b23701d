"""The harness's checks as pytest tests: one test, parametrized by the plugin over the table of
harness/suite.py for the configuration under test (--config / --data-dir), each parameter
carrying its check's marker (compat, smoke, overfit).

Run it where the checks are wanted: `python -m harness check` collects this file; in any
project, `pytest -m compat --config cfg.toml` (or `--data-dir DIR`) collects it too when no path
is named and no collected test uses the plugin's fixtures (harness/plugin.py: _wants_suite); a
project's own test module can `from harness.pytest_suite import test_check` to run them under
its pytest whatever the arguments.
"""
import os
from pathlib import Path

import pytest

from harness.findings import SKIP
from harness.suite import run_check


def standalone_args() -> list[str]:
    """pytest arguments that run this file on its own, wherever the caller stands: no ini file of
    the working directory applies (its addopts or testpaths are another project's), no cache is
    written, and the warnings the repository's pytest.ini filters (protobuf, which mediapipe
    pins, warns on import) stay quiet. A failed check is reported by its finding, not a traceback."""
    here = Path(__file__)
    return [str(here), "-c", os.devnull, "--rootdir", str(here.parent), "-p", "no:cacheprovider",
            "-W", "ignore::DeprecationWarning:google.protobuf.*", "-W", "ignore::UserWarning:google.protobuf.*",
            # the caller imported the project before pytest started: its modules are not assert-rewritten, and need not be
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "--tb=no",
            # hypothesis' plugin imports hypothesis (~80 modules, each assert-rewritten anew where
            # PYTHONDONTWRITEBYTECODE is set); the checks draw no examples
            "-p", "no:hypothesispytest"]


def test_check(cslr_check, harness, record_finding):
    check, param = cslr_check
    finding = record_finding(run_check(check, harness, param))
    if finding.status == SKIP:
        pytest.skip(finding.summary)
    assert finding.ok, finding.message()

"""`pytest --replay OUTPUT_DIR/nonfinite_batch.pt`: the batch train.py saved when it met a
non-finite value becomes a check that names the module and the samples."""
import pytest

from harness.replay import check_replay


@pytest.mark.compat
def test_replay(pytestconfig, record_finding):
    path = pytestconfig.getoption("--replay")
    if not path:
        pytest.skip("no --replay PATH given")
    finding = record_finding(check_replay(path))
    assert finding.ok, finding.message()

"""The fault catalogue (harness/faults/): every injected fault is caught by its expected
check, whose message names the cause (and the samples / modality / features where they apply);
the healthy pipeline raises no false alarm, on the demo corpus and on real Kaggle landmarks."""
import json

import pytest

from harness import faults
from harness.causes import root_causes
from harness.faults import CATALOGUE, CHECKS, check_name, crashed, default_base_config, healthy_run, inject_and_run, kaggle_corpus, run_check, table_checks
from harness.findings import FAIL, WARN


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base_corpus():
    return faults.small_demo_corpus()


@pytest.mark.parametrize("fault", CATALOGUE, ids=lambda f: f.name)
def test_fault_is_caught_and_named(fault, base_corpus):
    """Every check of the table runs (overfit where expected): the expected checks fail, and of
    all the failures exactly one is a root cause, an expected check; the others say so."""
    run = inject_and_run(fault, base_corpus, default_base_config(), table_checks(fault, quick=False))
    roots = root_causes(run.findings)
    assert len(roots) == 1 and check_name(roots[0]) in fault.expected_checks, (
        f"{fault.name}: root causes {[f.check for f in roots]}:\n" + "\n".join(f.message() for f in run.findings if f.status == FAIL))
    for f in run.findings:
        if f.status == FAIL and f is not roots[0]:
            assert f.values["caused_by"] == roots[0].check and f.summary.startswith(f"caused by {roots[0].check}"), f.message()
    for name in fault.expected_checks:
        finding = run.finding(name)
        assert finding is not None and not crashed(finding), f"{fault.name}: {name} did not run: {finding and finding.summary}"
        assert finding.status == FAIL, f"{fault.name} not caught by {name}:\n{finding.message()}"
        text = finding.message().lower()
        missing = [w for w in fault.cause.get(name, ()) if w.lower() not in text]
        assert not missing, f"{fault.name}: {name}'s message does not name the cause (no {missing}):\n{finding.message()}"
    primary = run.finding(fault.expected_checks[0])
    if fault.samples:
        assert run.touched, f"{fault.name}: the injection altered no sample"
        named = set(primary.samples)
        ok = set(run.touched) <= named if fault.samples == "all" else bool(set(run.touched) & named)
        assert ok, f"{fault.name}: altered {run.touched}, finding names {primary.samples}"
    if fault.modality:
        assert fault.modality in {run.finding(c).modality for c in fault.expected_checks}, primary.message()
    if fault.feature_prefix:
        assert any(f.startswith(fault.feature_prefix) for f in primary.features), primary.message()
    assert run.seconds < 60, f"{fault.name}: {run.seconds:.1f} s to verdict"


def test_catalogue_is_well_formed():
    names = [f.name for f in CATALOGUE]
    assert len(names) == len(set(names)) and len(names) >= 19
    for fault in CATALOGUE:
        assert fault.expected_checks and set(fault.expected_checks) <= set(CHECKS), fault.name
        assert set(fault.cause) <= set(fault.expected_checks) and fault.cause, fault.name
        assert fault.samples in ("", "all", "any"), fault.name
    # the ones taken from public issue trackers cite their thread
    assert sum("github.com/" in f.description for f in CATALOGUE) >= 3


def test_healthy_demo_corpus_raises_no_false_alarm(base_corpus):
    """All eleven checks, overfit included, on the unmodified small demo corpus."""
    run = healthy_run(base_corpus, default_base_config())
    assert [check_name(f) for f in run.findings] == list(CHECKS)
    assert not run.false_alarms, "\n".join(f.message() for f in run.false_alarms)


@pytest.mark.real_data
def test_healthy_kaggle_corpus_raises_no_false_alarm(tmp_path):
    """Real MediaPipe landmarks (42 Kaggle sequences): no FAIL. The expected WARNs are shift
    (the signers of dev/test differ) and clean_features: hands are missing in most frames (26 of 42 sequences never detect the left
    hand), and the wrist's z (MediaPipe's depth origin of the hand, ~1e-7) is flagged as a
    constant channel, which the std floor covers."""
    corpus = kaggle_corpus(tmp_path / "kaggle")
    if corpus is None:
        pytest.skip("no real data at ../shared/data/kaggle_asl_signs")
    run = healthy_run(corpus, default_base_config())
    assert not run.false_alarms, "\n".join(f.message() for f in run.false_alarms)
    warned = {check_name(f): f for f in run.findings if f.status == WARN}
    # and shift: split by participant, the dev and test signers never show the left hand (train's do)
    assert set(warned) <= {"clean_features", "shift"}, [f.message() for f in warned.values()]
    if "shift" in warned:
        assert "sees the left hand in 0% of frames" in warned["shift"].summary, warned["shift"].message()
    if "clean_features" in warned:
        clean = warned["clean_features"]
        assert "missing in" in clean.summary or all("[0].z" in f for f in clean.features), clean.message()


def test_a_crashing_check_is_a_failure_not_an_exception(base_corpus):
    from harness.context import HarnessContext

    ctx = HarnessContext(default_base_config(data_dir=str(base_corpus / "no-such-corpus")), "cpu")
    finding = run_check("labels", ctx)
    assert finding.status == FAIL and crashed(finding) and "could not run" in finding.summary
    with pytest.raises(ValueError, match="unknown check"):
        inject_and_run(CATALOGUE[0], base_corpus, default_base_config(), checks=("no_such_check",))


def test_cli_prints_the_detection_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "table.json"
    status = faults.main(["--quick", "--only", "inf_in_file", "frozen_model", "--no-healthy", "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "inf_in_file" in text and "frozen_model" in text and "detection: 2/2" in text
    data = json.loads(out.read_text())
    assert [r["verdict"] for r in data["rows"]] == ["caught", "caught"]
    assert data["rows"][1]["statuses"] == {"smoke": FAIL}
    assert faults.main(["--only", "no_such_fault"]) == 2

"""How a check's verdict is reached: a probe that cannot run is a skip with one line of reason,
a crash in the user's code a failure, a check with nothing to judge a skip; root causes are
linked by where a failure was measured to be born before the layers' order is consulted."""
from harness import suite
from harness.causes import link_causes, root_causes
from harness.checks.data import check_labels
from harness.findings import FAIL, SKIP, WARN, Finding
from harness.scan import CorpusScan, FileScan
from model.config import TrainConfig
from data.dataset import Vocabulary


class _Ctx:
    """The least a check of the table needs here: a configuration, for the skip test."""

    def __init__(self, cfg=None):
        self.cfg = cfg


def _run(fn):
    check = suite.Check("probe", lambda ctx, _: fn())
    return suite.run_check(check, _Ctx())


def test_a_probe_of_the_harness_that_cannot_run_is_a_skip_of_one_line():
    def harness_probe():
        # torch's dispatcher errors list every backend on a line of its own
        raise NotImplementedError("Could not run 'aten::ne.Scalar' with arguments from the 'NestedTensorCPU' backend.\n" + "Backend: kernel\n" * 100)

    f = _run(harness_probe)  # raised outside the harness (here: a test file): a failure, still one line
    assert f.status == FAIL and f.values["crashed"], f.message()
    assert "\n" not in f.summary and f.summary.count("Backend") == 0, f.summary
    # the same error raised from the harness's own code is the harness's limitation, not the user's failure
    code = compile("def probe():\n    raise NotImplementedError('Could not run aten::ne.Scalar\\nBackend: kernel\\n')\n", str(suite.HARNESS_DIR / "probes.py"), "exec")
    space: dict = {}
    exec(code, space)
    f = _run(space["probe"])
    assert f.status == SKIP and f.values["probe_error"], f.message()
    assert f.summary.startswith("the probe could not run on this setup: NotImplementedError: Could not run aten::ne.Scalar") and "\n" not in f.summary, f.summary
    assert "probes.py" in f.summary


def test_a_crash_in_user_code_is_a_failure_that_names_the_users_line(tmp_path, monkeypatch):
    user = tmp_path / "user_net.py"
    user.write_text("def forward():\n    raise RuntimeError('mat1 and mat2 shapes cannot be multiplied (2x99 and 6516x64)')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_net

    f = _run(user_net.forward)
    assert f.status == FAIL and f.values["crashed"], f.message()
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in f.summary and f"{user}:2" in f.summary, f.summary


def test_a_component_that_breaks_its_contract_makes_the_check_skip_naming_it():
    from model.components import ComponentError

    def needs_items():
        raise ComponentError("dataset = 'x:make': no item could be read (see the contract check)")

    f = _run(needs_items)
    assert f.status == SKIP and "cannot run" in f.summary and "contract" in f.summary and f.values["needs"] == "contract", f.message()


def test_labels_with_nothing_to_judge_skips_instead_of_passing():
    scan = CorpusScan(files=[FileScan(id="a", split="train", path="", error="item 0: missing key(s) ['id']")], train_stats=None)
    records = []
    f = check_labels(None, records, Vocabulary([]), scan)
    assert f.status == SKIP and "nothing to judge" in f.summary and "could be read" in f.summary, f.message()


# ----------------------------------------------------------------------------- root causes by measurement


def _f(check, status=FAIL, summary="x", **values):
    return Finding(check=check, status=status, summary=summary, values=values)


def test_a_padding_failure_is_caused_by_the_finding_it_measured_not_by_table_order():
    grads = _f("gradients", summary="2 parameter(s) get no gradient (dead branch)")
    transform = _f("padding[batch_transform]", summary="batch_transform depends on the batch's padding", born_in="batch_transform")
    model = _f("padding[model]", summary="padding leaks at inner.stem.1 (GroupNorm)", born_in="model")
    b2 = _f("batch_size[2]", summary="padding leaks", born_in="padding[batch_transform]")
    b4 = _f("batch_size[4]", summary="padding leaks", born_in="padding[model]")
    findings = link_causes([grads, transform, model, b2, b4])
    assert {f.check for f in root_causes(findings)} == {"gradients", "padding[batch_transform]", "padding[model]"}
    assert b2.values["caused_by"] == "padding[batch_transform]" and b4.values["caused_by"] == "padding[model]"


def test_a_crash_explains_only_crashes():
    crash = _f("forward", summary="the check could not run: RuntimeError: boom", crashed=True)
    other = _f("batch_size[2]", summary="padding leaks: 1 sample(s) differ")
    later_crash = _f("smoke", summary="the check could not run: RuntimeError: boom", crashed=True)
    link_causes([crash, other, later_crash])
    assert "caused_by" not in other.values and later_crash.values["caused_by"] == "forward"


def test_a_padding_check_explains_nothing_by_layer_alone():
    pad = _f("padding[model]", summary="padding leaks at conv (Conv1d)")
    smoke = _f("smoke", summary="loss diverges")
    link_causes([pad, smoke])
    assert "caused_by" not in smoke.values
    assert [f.check for f in root_causes([pad, smoke])] == ["padding[model]", "smoke"]


def test_warnings_are_never_roots():
    warn = _f("padding[model]", status=WARN, summary="latent")
    b = _f("batch_size[2]", summary="padding leaks", born_in="padding[model]")
    link_causes([warn, b])
    assert "caused_by" not in b.values and root_causes([warn, b]) == [b]


def test_table_has_both_padding_sources_and_the_transforms_skips_without_one():
    labels = [c.label(p) for c, p in suite.expand(TrainConfig(), ["padding"])]
    assert labels == ["padding[batch_transform]", "padding[model]"]
    f = suite._padding(_Ctx(TrainConfig()), "batch_transform")
    assert f.status == SKIP and "no batch_transform" in f.summary

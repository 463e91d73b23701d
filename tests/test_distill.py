"""Teacher -> student (model/student.py, harness/checks/distill.py, harness/faults/distill.py): the student's contract under the
harness, the distillation loss (KL at T, alignment of strides), the frozen teacher, each distillation
check failing on its fault and passing on a healthy setup, train.py --teacher end to end."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import faults
from harness.faults import distill
from harness.causes import root_causes
from harness.context import HarnessContext
from harness.findings import FAIL, PASS, SKIP, WARN
from harness.thresholds import DEFAULTS
from harness.suite import check_name, expand, run_check
from model import training
from model.config import TrainConfig
from model.i3d import count_parameters
from model.masking import pad_mask
from model.registry import create_model, model_from_checkpoint_args
from model.distill import align_posteriors, distillation_loss, load_teacher, uniform_student_kl

DISTILL_CHECKS = ("teacher", "teacher_competence", "distill_loss", "teacher_frozen")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base_corpus():
    return faults.small_demo_corpus()


@pytest.fixture(scope="module")
def teacher_path():
    return distill.demo_teacher()


def _cfg(corpus, teacher=None, **changes) -> TrainConfig:
    return faults.default_base_config(data_dir=str(corpus)).replace(
        model="student", model_overrides=dict(distill.SMALL_STUDENT), modalities=distill.DEMO_MODALITIES, teacher=teacher, **changes)


# ----------------------------------------------------------------------------- the student


def test_student_is_small_and_keeps_the_ctc_contract():
    teacher, student = create_model("i3d_teacher"), create_model("student")  # PHOENIX-2014 vocabulary, all modalities
    assert count_parameters(student) <= count_parameters(teacher) / 5, (count_parameters(student), count_parameters(teacher))
    student.eval()
    lengths = torch.tensor([37, 20, 9])
    x = torch.randn(3, 37, student.input_dim)
    with torch.no_grad():
        log_probs, out = student(x, lengths)
    assert torch.equal(out, student.output_lengths(lengths)) and out.tolist() == [math.ceil(n / 4) for n in lengths.tolist()]
    assert log_probs.shape == (3, 10, 1296) and torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 10), atol=1e-5)
    # rebuilt from a checkpoint's model_args, JSON round trip included
    args = json.loads(json.dumps(dataclasses.asdict(student.config)))
    again = model_from_checkpoint_args("student", args)
    again.load_state_dict(student.state_dict())
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x, lengths)[0], log_probs)
    # another stride: ceil(L / 2) per strided conv
    s8 = create_model("student", vocab_size=5, modalities=("hands",), strides=(2, 2, 2))
    assert s8.output_lengths(torch.tensor([17, 8, 1])).tolist() == [3, 1, 1]
    with pytest.raises(ValueError, match="kernel_size"):
        create_model("student", kernel_size=4)


def test_harness_checks_pass_on_the_student(base_corpus):
    """The compat and smoke checks through HarnessContext with cfg.model = "student" (every modality, default sizes)."""
    cfg = faults.default_base_config(data_dir=str(base_corpus)).replace(model="student", model_overrides={})
    ctx = HarnessContext(cfg, "cpu")
    names = ("contract", "forward", "loss_at_init", "gradients", "batch_size", "modalities", "smoke") + DISTILL_CHECKS
    with np.errstate(all="ignore"):
        findings = {c.label(p): run_check(c, ctx, p) for c, p in expand(cfg, names, configured_only=True)}
    failed = [f.message() for f in findings.values() if f.status == FAIL]
    assert not failed, "\n".join(failed)
    assert {"batch_size[1]", "batch_size[2]", "batch_size[4]", "gradients", "smoke"} <= {k for k, f in findings.items() if f.status == PASS}
    # no teacher configured: each distillation check skips, saying why
    for name in DISTILL_CHECKS:
        assert findings[name].status == SKIP and "no teacher configured" in findings[name].summary


# ----------------------------------------------------------------------------- the loss


def test_distillation_loss_is_t_squared_kl_at_t_over_valid_frames():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 4).log_softmax(-1), torch.randn(2, 5, 4).log_softmax(-1)
    lengths = torch.tensor([5, 3])
    T = 2.0
    got = distillation_loss(student, lengths, teacher, lengths, T)
    for b, n in enumerate(lengths.tolist()):
        p, log_q = F.softmax(teacher[b, :n] / T, -1), F.log_softmax(student[b, :n] / T, -1)
        want = (p * (p.log() - log_q)).sum(-1).mean() * T**2
        assert float(got[b]) == pytest.approx(float(want), rel=1e-5)
    assert torch.allclose(distillation_loss(teacher, lengths, teacher, lengths, T), torch.zeros(2), atol=1e-6)  # KL(p || p) = 0
    # padded frames do not count
    noisy = student.clone()
    noisy[1, 3:] = torch.randn(2, 4).log_softmax(-1)
    assert torch.equal(distillation_loss(noisy, lengths, teacher, lengths, T), got)
    # a uniform student gives T^2 (log V - H(teacher_T)), which the distill_loss check compares with
    uniform = torch.full((2, 5, 4), -math.log(4))
    assert torch.allclose(distillation_loss(uniform, lengths, teacher, lengths, T), uniform_student_kl(teacher, lengths, T), atol=1e-5)
    # T = 0 divides by zero: not finite (the check names it)
    assert not torch.isfinite(distillation_loss(student, lengths, teacher, lengths, 0.0)).any()
    with pytest.raises(ValueError, match="same vocabulary"):
        distillation_loss(student, lengths, teacher[..., :3], lengths, T)


def test_alignment_of_strides():
    probs = torch.rand(2, 8, 3).softmax(-1)
    lengths = torch.tensor([8, 6])
    # equal frame counts: identity
    assert torch.equal(align_posteriors(probs, lengths, lengths, 8), probs * pad_mask(lengths, 8)[:, :, None])
    # student stride 8 vs teacher stride 4: the average of each pair of teacher frames
    half = align_posteriors(probs, lengths, torch.tensor([4, 3]), 4)
    assert torch.allclose(half[0], probs[0].view(4, 2, 3).mean(1), atol=1e-6)
    assert torch.allclose(half[1, :3], probs[1, :6].view(3, 2, 3).mean(1), atol=1e-6) and torch.equal(half[1, 3], torch.zeros(3))
    # the other way (student stride 2): still distributions, padded teacher frames never mixed in
    up = align_posteriors(probs, lengths, torch.tensor([16, 12]), 16)
    assert torch.allclose(up[0].sum(-1), torch.ones(16), atol=1e-6) and torch.allclose(up[1, :12].sum(-1), torch.ones(12), atol=1e-6)
    assert torch.equal(up[1, 12:], torch.zeros(4, 3))
    probs2 = probs.clone()
    probs2[1, 6:] = 5.0  # garbage in the teacher's padding
    assert torch.equal(align_posteriors(probs2, lengths, torch.tensor([16, 12]), 16), up)
    # the stride-8 student against a stride-4 teacher end to end
    teacher_lp = probs.log()
    student_lp = torch.randn(2, 4, 3).log_softmax(-1)
    loss = distillation_loss(student_lp, torch.tensor([4, 3]), teacher_lp, lengths, 1.0)
    p = probs[0].view(4, 2, 3).mean(1)
    assert float(loss[0]) == pytest.approx(float((p * (p.log() - student_lp[0])).sum(-1).mean()), rel=1e-5)


def test_teacher_is_frozen_in_the_training_step(base_corpus, teacher_path):
    training.clear_teacher_cache()
    cfg = _cfg(base_corpus, str(teacher_path))
    ctx = HarnessContext(cfg, "cpu")
    teacher = training.teacher_for(cfg, torch.device("cpu"))
    assert training.teacher_for(cfg, torch.device("cpu")) is teacher  # loaded once
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    student = ctx.model()
    teacher.module.train()  # whatever toggles modes in between, the training path freezes it again
    optimizer = training.build_optimizer(cfg, student)
    res = training.train_step(student, ctx.probe_batch(), optimizer, training.make_scaler(torch.device("cpu"), cfg), cfg, torch.device("cpu"))
    assert res.finite and not teacher.module.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.module.parameters())
    assert all(torch.equal(v, teacher.module.state_dict()[k]) for k, v in before.items())
    # the step's loss is CTC + weight * distillation
    ctc, kd, _ = training.loss_terms(student.eval(), ctx.probe_batch(), torch.device("cpu"), cfg)
    loss, per_sample, _ = training.compute_loss(student, ctx.probe_batch(), torch.device("cpu"), cfg.replace(distill_weight=0.5))
    assert torch.allclose(per_sample, ctc + 0.5 * kd)
    none = training.loss_terms(student, ctx.probe_batch(), torch.device("cpu"), cfg.replace(teacher=None))
    assert none[1] is None and torch.allclose(none[0], ctc)


# ----------------------------------------------------------------------------- the checks and their faults

DISTILL_FAULTS = [f for f in faults.CATALOGUE if f.inject.__module__ == distill.__name__]


def test_each_distillation_check_has_a_fault():
    caught = {c for f in DISTILL_FAULTS for c in f.expected_checks}
    assert set(DISTILL_CHECKS) <= caught
    assert {f.name for f in DISTILL_FAULTS} >= {"teacher_vocabulary_shuffled", "teacher_in_train_mode", "teacher_other_normalization", "distill_temperature_zero"}


def test_distillation_checks_pass_on_a_healthy_setup(base_corpus, teacher_path):
    healthy = faults.Fault("healthy_distillation", "", DISTILL_CHECKS, distill.healthy_distillation)
    run = faults.inject_and_run(healthy, base_corpus, faults.default_base_config(), DISTILL_CHECKS + ("smoke",))
    assert [f.status for f in run.findings] == [PASS] * 5, "\n".join(f.message() for f in run.findings)
    found = {check_name(f): f for f in run.findings}
    assert "same vocabulary" in found["teacher"].summary and "identical frames" in found["teacher"].values["alignment"]
    assert found["teacher_competence"].values["wer"] <= DEFAULTS["max_teacher_wer"]
    assert 0.5 <= found["distill_loss"].values["ratio"] <= 2.0


@pytest.mark.parametrize("fault", DISTILL_FAULTS, ids=lambda f: f.name)
def test_distillation_check_fails_on_its_fault(fault, base_corpus, teacher_path):
    run = faults.inject_and_run(fault, base_corpus, faults.default_base_config(), DISTILL_CHECKS + ("smoke",))
    roots = root_causes(run.findings)
    assert len(roots) == 1 and check_name(roots[0]) == fault.expected_checks[0], [f.message() for f in run.findings if f.status == FAIL]
    for name in fault.expected_checks:
        text = run.finding(name).message().lower()
        assert run.finding(name).status == FAIL and all(w.lower() in text for w in fault.cause.get(name, ())), text


def test_an_i3d_teacher_and_a_stride_8_student(base_corpus, tmp_path):
    """An (untrained, valid) I3D teacher of stride 4 and a student of stride 8: the output lengths
    align by interpolation, the loss is of the expected scale, the teacher (BiLSTM, batch norm,
    dropout) stays frozen; an untrained teacher is named by the competence check."""
    tcfg = faults.default_base_config(data_dir=str(base_corpus))
    data = training.build_data(tcfg)
    model = training.build_model(tcfg, len(data.vocab), data.input_dim)
    path = tmp_path / "i3d.pt"
    torch.save(distill.teacher_checkpoint_state(tcfg, model, data.vocab, data.stats, 0, 1.0, []), path)
    cfg = tcfg.replace(model="student", model_overrides={**distill.SMALL_STUDENT, "strides": [2, 2, 2]}, teacher=str(path))
    training.clear_teacher_cache()
    ctx = HarnessContext(cfg, "cpu")
    found = {c: run_check(c, ctx) for c in DISTILL_CHECKS}
    assert found["teacher"].status == PASS and "interpolation" in found["teacher"].values["alignment"], found["teacher"].message()
    assert found["teacher"].values["frame_ratio"] == pytest.approx(0.5, abs=0.1)
    assert found["distill_loss"].status in (PASS, WARN) and found["teacher_frozen"].status == PASS, found["teacher_frozen"].message()
    assert found["teacher_competence"].status == FAIL and "not competent" in found["teacher_competence"].summary
    # a file that is not a checkpoint: the teacher check names it, the others cannot run
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    ctx = HarnessContext(cfg.replace(teacher=str(tmp_path / "junk.pt")), "cpu")
    bad = run_check("teacher", ctx)
    assert bad.status == FAIL and "weights_only" in bad.summary
    assert run_check("teacher_frozen", ctx).status == SKIP


def test_global_statistics_of_teacher_and_student_are_compared(base_corpus, tmp_path):
    """Global z-scores: the teacher's norm_stats must be those of the student's train split."""
    tcfg = faults.default_base_config(data_dir=str(base_corpus), normalize="global", modalities=distill.DEMO_MODALITIES)
    data = training.build_data(tcfg)
    path = tmp_path / "global.pt"
    torch.save(distill.teacher_checkpoint_state(tcfg, training.build_model(tcfg, len(data.vocab), data.input_dim), data.vocab, data.stats, 0, 1.0, []), path)
    cfg = tcfg.replace(model="student", model_overrides=dict(distill.SMALL_STUDENT), teacher=str(path))
    assert run_check("teacher", HarnessContext(cfg, "cpu")).status == PASS
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["norm_stats"]["mean"] = [m + 0.5 * s for m, s in zip(ckpt["norm_stats"]["mean"], ckpt["norm_stats"]["std"])]
    torch.save(ckpt, path)
    other = run_check("teacher", HarnessContext(cfg, "cpu"))
    assert other.status == FAIL and "global z-score statistics" in other.summary and "0.5 std" in other.summary, other.summary


# ----------------------------------------------------------------------------- train.py --teacher


def test_train_py_distils_and_records_the_teacher(base_corpus, teacher_path, tmp_path, capsys):
    import train

    config = tmp_path / "student.json"
    config.write_text(json.dumps({"model": "student", "model_overrides": distill.SMALL_STUDENT, "modalities": list(distill.DEMO_MODALITIES),
                                  "batch_size": 8, "distill_weight": 0.5, "distill_temperature": 2.0}))
    out = tmp_path / "run"
    training.clear_teacher_cache()
    status = train.main(["--data_dir", str(base_corpus), "--config", str(config), "--teacher", str(teacher_path),
                         "--output_dir", str(out), "--epochs", "1", "--threads", "1", "--beam_width", "1"])
    printed = capsys.readouterr().out
    assert status == 0, printed[-3000:]
    assert "compatibility gate: PASSED" in printed and "teacher student" in printed and "T = 2" in printed
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    teacher = load_teacher(teacher_path)
    assert ckpt["teacher"] == teacher.record() and ckpt["teacher"]["sha256"] == teacher.sha256 and ckpt["teacher"]["vocab"] == ckpt["vocab"]
    assert ckpt["config"]["teacher"] == str(teacher_path) and ckpt["model_name"] == "student"
    gate = json.loads((out / "gate_findings.json").read_text())
    statuses = {f["check"]: f["status"] for f in gate["findings"]}
    assert all(statuses.get(c) == PASS for c in DISTILL_CHECKS), statuses


def test_train_py_refuses_a_teacher_of_another_vocabulary_even_without_the_gate(base_corpus, teacher_path, tmp_path):
    import train

    ckpt = torch.load(teacher_path, map_location="cpu", weights_only=True)
    ckpt["vocab"] = ckpt["vocab"][::-1]
    other = tmp_path / "reversed.pt"
    torch.save(ckpt, other)
    training.clear_teacher_cache()
    with pytest.raises(SystemExit, match="vocabulary order differs"):
        train.main(["--data_dir", str(base_corpus), "--model", "student", "--modalities", "pose", "hands", "--teacher", str(other),
                    "--output_dir", str(tmp_path / "run"), "--epochs", "1", "--skip-gate", "--threads", "1"])
    assert not (tmp_path / "run" / "last.pt").exists()

"""Distillation checks: in the gate whenever the configuration names a `teacher` (skipped with the
reason otherwise). Each is a pure function of the HarnessContext returning a Finding.

    teacher             the checkpoint loads (weights_only) and rebuilds; its vocabulary (ids and
                        glosses), feature layout (modalities, width) and normalization (method,
                        imputation, std floor, clip, global statistics, batch_transform) are the
                        student's; its output lengths can be aligned with the student's
    teacher_competence  the teacher is finite and competent on the probe set: greedy WER of its dev
                        probe samples <= the max_teacher_wer threshold, decoded with its own vocabulary
    distill_loss        the distillation loss at init (the training path's loss_terms) is finite,
                        >= 0, and close to T^2 KL(teacher_T || uniform), what a near-uniform fresh
                        student must give; a temperature of 0 is named
    teacher_frozen      during the training step the teacher is in eval mode (two passes agree: no
                        dropout), gets no gradient, is not in the optimizer and does not change
                        (parameters and batch-norm buffers); the distillation term reaches the student
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from data.dataset import Vocabulary, collate
from harness.findings import FAIL, SKIP, Finding, status_from
from harness.probes import first_nonfinite_module
from model import training
from model.distill import TeacherLoadError, load_teacher, teacher_posteriors, uniform_student_kl

# the training configuration fields that decide what the model input is
INPUT_FIELDS = ("normalize", "impute", "std_floor", "clip", "dataset", "batch_transform")
COMPETENCE_SAMPLES = 12  # random dev samples on top of the extremes (longest, shortest, most missing, largest)


# ----------------------------------------------------------------------------- applicability


def no_teacher(ctx) -> str:
    if ctx.cfg.teacher is None:
        return "no teacher configured (teacher = None): distillation is off"
    if ctx.cfg.distill_weight == 0:
        return f"distill_weight = 0: the teacher {ctx.cfg.teacher} takes no part in the loss"
    return ""


def _skip_unloadable(name: str, exc: Exception) -> Finding:
    return Finding(check=name, status=SKIP, summary=f"cannot run: the teacher does not load ({exc}); see the teacher check")


def _probe(ctx, split: str = "train", k_random: int = 4, n: int | None = None):
    ds = ctx.dataset(split=split)
    idx = ctx.probe_indices(split=split, k_random=k_random)
    return ds, idx[:n] if n else idx


def _batches(ctx, ds, indices, size: int):
    for j in range(0, len(indices), size):
        yield ctx.to_input(collate([ds[i] for i in indices[j : j + size]]))


# ----------------------------------------------------------------------------- teacher


def _input_problems(teacher, ctx) -> list[str]:
    """What the teacher was trained on that differs from what the student trains on."""
    cfg, tcfg = ctx.cfg, teacher.config
    if not tcfg:
        return ["the checkpoint records no training configuration ('config'): what it was trained on cannot be compared"]
    problems = []
    for key in INPUT_FIELDS:
        mine, theirs = getattr(cfg, key), tcfg.get(key)
        if key not in tcfg:
            continue
        if isinstance(mine, float) or isinstance(theirs, float):
            same = theirs is not None and mine is not None and math.isclose(float(mine), float(theirs), rel_tol=1e-9)
        else:
            same = mine == theirs
        if not same:
            what = "normalization" if key == "normalize" else key
            problems.append(f"{what}: the teacher was trained on {key} = {theirs!r}, the student trains on {mine!r}")
    if not problems and cfg.normalize == "global" and cfg.dataset is None:
        if teacher.norm_stats is None:
            problems.append("normalization: global z-scores, but the teacher checkpoint holds no norm_stats to compare")
        else:
            tm, ts = np.asarray(teacher.norm_stats["mean"]), np.asarray(teacher.norm_stats["std"])
            stats = ctx.scan.train_stats
            if tm.shape != stats.mean.shape:
                problems.append(f"normalization: the teacher's global statistics cover {tm.size} channels, the student's {stats.mean.size}")
            else:
                floor = max(float(cfg.std_floor), 1e-12)
                std = np.maximum(stats.std, floor)
                shift = float(np.max(np.abs(tm - stats.mean) / std))
                scale = float(np.max(np.abs(np.maximum(ts, floor) / std - 1.0)))
                tol = ctx.thresholds["teacher_stats_tol"]
                if shift > tol or scale > tol:
                    problems.append(
                        f"normalization: the teacher's global z-score statistics are not the student's train split's "
                        f"(means differ by up to {shift:.3g} std, stds by up to {scale:.1%}): the same frame reaches the two models differently"
                    )
    return problems


def check_teacher(ctx) -> Finding:
    start = time.perf_counter()
    cfg = ctx.cfg
    try:
        teacher = load_teacher(cfg.teacher, "cpu")
    except TeacherLoadError as exc:
        return Finding(check="teacher", status=FAIL, summary=str(exc), hint="point teacher at a best.pt / last.pt that train.py wrote",
                       values={"key": "does not load"}, seconds=time.perf_counter() - start)
    module = teacher.module.eval()
    fails, values, tables = [], {"sha256": teacher.sha256, "teacher_model": teacher.model_name}, {}
    vocab_problem = training.teacher_vocab_problem(teacher, ctx.vocab)
    if vocab_problem:
        fails.append(vocab_problem)
        mine = ctx.vocab.to_list()
        rows = [[g, mine.index(g) + 1 if g in mine else "-", teacher.vocab.index(g) + 1 if g in teacher.vocab else "-"]
                for g in dict.fromkeys(mine + list(teacher.vocab))]
        tables["Vocabulary ids, student vs teacher"] = {"columns": ["gloss", "student id", "teacher id"], "rows": [r for r in rows if r[1] != r[2]]}
    # feature layout: modalities and width
    t_mods = teacher.config.get("modalities") or teacher.model_args.get("modalities")
    if t_mods is not None and list(t_mods) != list(cfg.modalities):
        fails.append(f"feature layout: the teacher was trained on modalities {list(t_mods)}, the student trains on {list(cfg.modalities)}")
    t_width = getattr(module, "input_dim", None) or teacher.model_args.get("input_dim")
    if t_width is not None and int(t_width) != int(ctx.input_dim):
        fails.append(f"feature layout: the teacher takes {t_width} features a frame, the student's input has {ctx.input_dim}")
    fails += _input_problems(teacher, ctx)
    # output lengths: both models' on the probe lengths, and the teacher's forward agrees with its own
    alignment = ""
    if not any(f.startswith("feature layout") for f in fails):
        batch = ctx.probe_batch()
        student = ctx.model()
        with torch.no_grad():
            t_lp, t_len = module.to(ctx.device)(batch.features, batch.lengths)
        s_len = student.output_lengths(batch.lengths.cpu())
        t_expected = module.output_lengths(batch.lengths.cpu())
        if t_lp.shape[-1] != len(ctx.vocab):
            fails.append(f"the teacher outputs V={t_lp.shape[-1]} classes, the student's vocabulary has {len(ctx.vocab)} (blank 0)")
        if not torch.equal(t_len.cpu(), t_expected):
            fails.append(f"the teacher's output lengths {t_len.tolist()} differ from its output_lengths() {t_expected.tolist()}: they cannot be aligned")
        elif int(t_len.min()) < 1 or int(s_len.min()) < 1:
            fails.append(f"output lengths cannot be aligned: teacher {t_len.tolist()}, student {s_len.tolist()} (a sample with 0 frames)")
        else:
            same = torch.equal(t_len.cpu(), s_len)
            ratio = float(s_len.sum()) / float(t_len.sum())
            alignment = ("identical frames (same temporal stride)" if same else
                         f"linear interpolation of the teacher's tempered posteriors over each sample's valid frames "
                         f"(student/teacher frames {ratio:.2f})")
            values.update(teacher_frames=t_len.tolist(), student_frames=s_len.tolist(), frame_ratio=ratio)
    values["alignment"] = alignment
    values["key"] = "mismatch" if fails else ("aligned" if alignment.startswith("identical") else "interpolated")
    return Finding(
        check="teacher",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or (f"{teacher.model_name} from {teacher.path} (sha256 {teacher.sha256[:12]}): same vocabulary "
                                     f"({len(teacher.vocab)} glosses, same ids), modalities {list(cfg.modalities)}, normalization "
                                     f"{cfg.normalize}; output frames: {alignment}"),
        hint=("distil only from a teacher trained on this corpus's vocabulary and this feature pipeline: retrain it, or configure the "
              "student like the teacher (its config is in the checkpoint)") if fails else "",
        values=values,
        tables=tables,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- teacher_competence


def check_teacher_competence(ctx) -> Finding:
    start = time.perf_counter()
    max_wer = ctx.thresholds["max_teacher_wer"]
    try:
        teacher = load_teacher(ctx.cfg.teacher, ctx.device)
    except TeacherLoadError as exc:
        return _skip_unloadable("teacher_competence", exc)
    # the checkpoint's competence, in eval mode whatever the training path does (teacher_frozen judges that)
    module = teacher.module.eval()
    vocab = Vocabulary(teacher.vocab)
    split = "dev" if ctx.split_records("dev") else "train"
    ds, indices = _probe(ctx, split, k_random=COMPETENCE_SAMPLES)
    from model.decode import greedy_decode
    from model.metrics import word_error_rate

    refs, hyps, ids, fails, nonfinite = [], [], [], [], None
    for batch in _batches(ctx, ds, indices, ctx.cfg.batch_size):
        with torch.no_grad():
            lp, ol = module(batch.features, batch.lengths)
        if not torch.isfinite(lp).all() and nonfinite is None:
            first = first_nonfinite_module(module, batch.features, batch.lengths)
            nonfinite = (f"the teacher's output is not finite on {split} probe samples"
                         + (f" (first at module '{first[0]}', {first[1]})" if first else "")
                         + ("; its input already holds NaN/Inf" if not torch.isfinite(batch.features).all() else ""))
        for sid, ref, h in zip(batch.ids, batch.glosses, greedy_decode(lp.float().cpu(), ol.cpu())):
            ids.append(sid)
            refs.append(list(ref))
            hyps.append(vocab.decode(h.tokens))
    wer = word_error_rate(refs, hyps)
    per_sample = [(word_error_rate([r], [h]).wer, sid) for r, h, sid in zip(refs, hyps, ids)]
    if nonfinite:
        fails.append(nonfinite)
    elif wer.wer > max_wer:
        blank = sum(not h for h in hyps)
        fails.append(
            f"the teacher is not competent: greedy WER {wer.wer:.1%} on {len(ids)} {split} probe samples (limit {max_wer:.0%})"
            + (f"; it decodes {blank} of them as nothing (all blank): untrained, or fed input it was not trained on" if blank else "")
        )
    worst = [sid for w, sid in sorted(per_sample, reverse=True) if w > max_wer]
    return Finding(
        check="teacher_competence",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or f"finite; greedy WER {wer.wer:.1%} on {len(ids)} {split} probe samples (limit {max_wer:.0%})",
        hint="distil from the run's best.pt after training (python -m model.evaluate TEACHER.pt gives its WER); a broken teacher teaches its errors" if fails else "",
        values={"key": f"WER {wer.wer:.1%}", "wer": wer.wer, "split": split, "samples": len(ids), "limit": max_wer},
        samples=worst if fails else [],
        tables={"Teacher on the probe set": {"columns": ["id", "reference", "teacher"],
                                             "rows": [[sid, " ".join(r), " ".join(h)] for sid, r, h in zip(ids, refs, hyps)]}},
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- distill_loss


def check_distill_loss(ctx) -> Finding:
    start = time.perf_counter()
    cfg = ctx.cfg
    T, w = cfg.distill_temperature, cfg.distill_weight
    try:
        teacher = training.teacher_for(cfg, ctx.device)
    except TeacherLoadError as exc:
        return _skip_unloadable("distill_loss", exc)
    batch = ctx.probe_batch()
    student = ctx.model().eval()
    with torch.no_grad(), np.errstate(all="ignore"):
        ctc, kd, _ = training.loss_terms(student, batch, ctx.device, cfg)  # exactly what compute_loss adds
        t_lp, t_len = teacher_posteriors(teacher.module, batch.features, batch.lengths)
        expected = uniform_student_kl(t_lp, t_len, T) if T > 0 else torch.full((len(batch),), float("nan"))
    kd = kd.float().cpu()
    expected = expected.float().cpu()
    fails, warns = [], []
    bad = [batch.ids[i] for i in torch.nonzero(~torch.isfinite(kd)).flatten().tolist()]
    if T <= 0:
        fails.append(
            f"distill_temperature = {T:g}: the posteriors are tempered as softmax(log_probs / T), so a temperature of 0 "
            f"divides by zero and the distillation loss is not finite (NaN for {len(bad)} of {len(batch)} samples)"
        )
    elif bad:
        fails.append(f"distillation loss at init not finite for {len(bad)} sample(s)")
    ratio = float("nan")
    if not fails:
        if float(kd.min()) < -1e-5:
            fails.append(f"distillation loss at init is negative ({float(kd.min()):.3g}): a KL divergence of distributions cannot be; "
                         "the posteriors are not normalised")
        ref = float(expected.mean())
        if ref < ctx.thresholds["min_teacher_kl"] * T**2:
            warns.append(f"the teacher's posteriors at T = {T:g} are nearly uniform (KL to uniform {ref:.2g}): there is little to distil")
        else:
            ratio = float(kd.mean()) / ref
            lo, hi = ctx.thresholds["distill_init_ratio"]
            if not lo <= ratio <= hi:
                fails.append(
                    f"distillation loss at init is {ratio:.2f}x T^2 KL(teacher || uniform) = {ref:.3f} (allowed {lo}..{hi}): the "
                    "fresh student is near uniform, so the loss is of the wrong scale (T^2 factor, frames summed not averaged?)"
                )
    share = float(w * kd.mean() / ctc.float().cpu().mean()) if not fails else float("nan")
    return Finding(
        check="distill_loss",
        status=status_from(bool(fails), bool(warns)),
        summary="; ".join(fails + warns) or (f"finite at T = {T:g}: {float(kd.mean()):.3f} per frame, {ratio:.2f}x that of a uniform student; "
                                             f"weighted {w:g} x it is {share:.2f}x the CTC loss at init ({float(ctc.mean()):.3f})"),
        hint="set distill_temperature > 0 (1-4 is usual; 2 is the default)" if T <= 0 else
             ("check the distillation loss: KL(teacher_T || student_T) * T^2 averaged over valid frames" if fails else ""),
        values={"key": f"KD {float(kd.mean()):.3g}" if not bad else "non-finite", "temperature": T, "weight": w,
                "distill_at_init": float(kd.mean()), "uniform_student": float(expected.mean()), "ratio": ratio, "ctc_at_init": float(ctc.mean()),
                "weighted_share": share},
        samples=bad,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- teacher_frozen


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def check_teacher_frozen(ctx) -> Finding:
    start = time.perf_counter()
    cfg, device = ctx.cfg, ctx.device
    try:
        teacher = training.teacher_for(cfg, device)
    except TeacherLoadError as exc:
        return _skip_unloadable("teacher_frozen", exc)
    module = teacher.module
    batch = ctx.probe_batch()
    fails, values = [], {}
    before = _state(module)
    student = ctx.model()
    student.train()
    # 1. the loss the training step computes: the teacher's mode while it ran, gradients afterwards
    loss, _, _ = training.compute_loss(student, batch, device, cfg)
    mode_in_step = module.training
    if loss.requires_grad:
        loss.backward()
    with_grad = [n for n, p in module.named_parameters() if p.grad is not None]
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    if mode_in_step:
        drop = [m.p for m in module.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
        fails.append("the teacher is in train mode during the distillation step"
                     + (f": its dropout (p = {drop[0]:g}) is active" if drop else "")
                     + " and its batch norms use and update batch statistics")
    # 2. two passes of the training path's teacher over the same batch must agree exactly
    first, _ = teacher_posteriors(module, batch.features, batch.lengths)
    second, _ = teacher_posteriors(module, batch.features, batch.lengths)
    diff = float((first - second).abs().max())
    values["two_pass_max_diff"] = diff
    if diff > 0:
        fails.append(f"two teacher passes over the same batch differ by up to {diff:.3g} (dropout active): the targets are noise")
    if with_grad:
        fails.append(f"{len(with_grad)} teacher parameter(s) received a gradient, e.g. {with_grad[0]}: the teacher's forward is not under no_grad")
    elif trainable and not mode_in_step:
        values["teacher_requires_grad"] = len(trainable)
    # 3. the distillation term alone reaches the student
    student.zero_grad(set_to_none=True)
    ctc, kd, _ = training.loss_terms(student, batch, device, cfg)
    reached = None
    if kd is not None and torch.isfinite(kd).all():
        kd.mean().backward()
        reached = sum(1 for p in student.parameters() if p.grad is not None and torch.any(p.grad != 0))
        if reached == 0:
            fails.append("the distillation term gives the student no gradient (its output is detached from the KL)")
    values["student_params_with_distill_grad"] = reached
    # 4. one optimisation step: only the student moves
    student.zero_grad(set_to_none=True)
    optimizer = training.build_optimizer(cfg, student)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]} & {id(p) for p in module.parameters()}
    if in_optimizer:
        fails.append(f"{len(in_optimizer)} teacher parameter(s) are in the student's optimizer")
    training.train_step(student, batch, optimizer, training.make_scaler(device, cfg), cfg, device)
    after = module.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        buffers = {n for n, _ in module.named_buffers()}
        kinds = "batch-norm running statistics" if all(k in buffers for k in changed) else "weights"
        fails.append(f"{len(changed)} teacher tensor(s) changed during the step ({kinds}), e.g. {changed[0]}")
    module.load_state_dict(before)  # leave the teacher as the file has it, whatever happened
    module.zero_grad(set_to_none=True)
    return Finding(
        check="teacher_frozen",
        status=status_from(bool(fails)),
        summary="; ".join(fails) or ("the teacher stays in eval mode (two passes identical), gets no gradient and does not change; "
                                     + (f"the distillation term reaches {reached} student parameter tensors" if reached is not None else
                                        "the distillation term itself is not finite, so where its gradient goes is not judged (see distill_loss)")),
        hint="keep the teacher out of the trained module: freeze it (eval(), requires_grad_(False)) and run it under torch.no_grad() "
             "every step (model.distill.teacher_posteriors)" if fails else "",
        values={"key": "frozen" if not fails else "not frozen", **values, "changed": changed[:20]},
        features=changed[:50],
        seconds=time.perf_counter() - start,
    )

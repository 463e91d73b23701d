"""model.training and model.config: the building blocks train.py and the harness share."""
import json

import pytest
import torch

from data.dataset import collate
from data.synthetic import generate_corpus
from model import training
from model.config import TrainConfig, load_config


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    corpus = generate_corpus(tmp_path_factory.mktemp("c") / "corpus", seed=5, n_train=8, n_dev=2, n_test=2)
    cfg = TrainConfig(data_dir=str(corpus), model="i3d_tiny", batch_size=4)
    return cfg, training.build_data(cfg)


def test_config_file_and_overrides(tmp_path):
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"lr": 0.01, "modalities": ["hands", "pose"], "thresholds": {"smoke_steps": 3}}))
    cfg = load_config(j, batch_size=2, lr=None)
    assert cfg.lr == 0.01 and cfg.batch_size == 2 and cfg.modalities == ("pose", "hands")
    t = tmp_path / "c.toml"
    t.write_text('normalize = "per_sample"\nepochs = 3\n')
    assert load_config(t).normalize == "per_sample"
    j.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ValueError, match=r"unknown configuration field\(s\) \['learning_rate'\]"):
        load_config(j)
    with pytest.raises(ValueError, match="normalize='twice'"):
        TrainConfig(normalize="twice")


@pytest.mark.parametrize("amp", [False, True])
def test_train_step_cpu_with_and_without_bf16_autocast(bundle, amp):
    cfg, data = bundle
    cfg = cfg.replace(amp=amp)
    torch.manual_seed(0)
    model = training.build_model(cfg, len(data.vocab))
    opt = training.build_optimizer(cfg, model)
    scaler = training.make_scaler(torch.device("cpu"), cfg)
    assert not scaler.is_enabled()  # bf16 needs no scaler; only fp16 does
    batch = collate([data.splits["train"][i] for i in range(4)])
    before = [p.detach().clone() for p in model.parameters()]
    res = training.train_step(model, batch, opt, scaler, cfg, torch.device("cpu"))
    assert res.finite and res.loss > 0 and res.grad_norm > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_step_reports_infinite_loss_by_sample_id(bundle):
    cfg, data = bundle
    model = training.build_model(cfg, len(data.vocab))
    opt = training.build_optimizer(cfg, model)
    samples = [data.splits["train"][i] for i in range(2)]
    samples[1].features = samples[1].features[:3]  # 1 output frame for a multi-gloss target: CTC infeasible
    before = [p.detach().clone() for p in model.parameters()]
    res = training.train_step(model, collate(samples), opt, training.make_scaler(torch.device("cpu"), cfg), cfg, torch.device("cpu"))
    assert not res.finite and res.nonfinite_ids == [samples[1].id]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no update from a bad batch


def test_evaluate_scores_wer(bundle):
    cfg, data = bundle
    model = training.build_model(cfg, len(data.vocab))
    loader = training.make_loader(data.splits["dev"], 2, shuffle=False)
    res = training.evaluate(model, loader, data.vocab, torch.device("cpu"), cfg, beam_width=3)
    assert 0.0 <= res.wer.wer and set(res.hypotheses) == {r.id for r in data.splits["dev"].records}


def test_resolve_device_refuses_missing_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        training.resolve_device("cuda")
    assert training.resolve_device("auto").type == "cpu"


@pytest.mark.gpu
def test_cuda_step_matches_cpu_step(bundle):
    """With --gpu: the same step on CUDA gives the CPU's loss (device handling is honest)."""
    cfg, data = bundle
    batch = collate([data.splits["train"][i] for i in range(4)])
    losses = []
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = training.build_model(cfg.replace(model_overrides={"dropout": 0.0}), len(data.vocab)).to(dev)
        loss, _, _ = training.compute_loss(model, training.to_model_input(batch, torch.device(dev)), torch.device(dev), cfg)
        losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)

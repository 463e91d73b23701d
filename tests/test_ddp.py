"""Distributed data parallel on CPU (gloo): the sampler that shards an epoch, weight agreement
across ranks after real train steps, and train.py under torchrun with two processes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import training
from model.config import load_config

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- ShardedSampler


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 24, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_every_sample_once_per_epoch_across_ranks(n, world):
    for epoch in (0, 1, 7):
        shards = []
        for rank in range(world):
            sampler = training.ShardedSampler(n, rank, world, seed=3)
            sampler.set_epoch(epoch)
            shard = list(sampler)
            assert len(shard) == len(sampler)
            shards.append(shard)
        seen = [i for shard in shards for i in shard]
        assert sorted(seen) == list(range(n))  # nothing dropped, nothing repeated (no padding)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sampler_reshuffles_each_epoch_and_repeats_for_the_same_epoch():
    def order(epoch, seed=0, rank=0):
        s = training.ShardedSampler(50, rank, 2, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(1) == order(1)  # every rank derives the same permutation: shards never overlap
    assert order(1) != order(2) and order(1, seed=0) != order(1, seed=1)
    assert set(order(1, rank=0)).isdisjoint(order(1, rank=1))


def test_sampler_without_shuffle_strides_in_order():
    assert list(training.ShardedSampler(7, 1, 3, shuffle=False)) == [1, 4]
    assert list(training.ShardedSampler(7, 0, 3, shuffle=False)) == [0, 3, 6]


# ----------------------------------------------------------------------------- two real ranks


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from data.synthetic import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("ddp") / "corpus", seed=0, n_train=24, n_dev=6, n_test=6)


def _params(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _ddp_worker(rank: int, world: int, port: int, corpus: str, out_dir: str) -> None:
    """One rank: a small model seeded differently per rank, wrapped in DDP, trained on its shard.

    Scenario "even": 2 steps on every rank. Scenario "uneven": rank 0 runs one step more, inside
    DDP.join() as train.py does. Saves {scenario: parameters}, the initial weights and sample ids.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from model.config import TrainConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(data_dir=corpus, model="i3d_small", batch_size=4, device="cpu")
        data = training.build_data(cfg)
        ds = data.splits["train"]
        device = torch.device("cpu")
        torch.manual_seed(100 + rank)  # different weights per rank: DDP's broadcast must make them equal
        model = training.build_model(cfg, len(data.vocab))
        saved = {"init": _params(model), "ids": []}
        ddp = DistributedDataParallel(model)
        optimizer = training.build_optimizer(cfg, model)
        scaler = training.make_scaler(device, cfg)
        sampler = training.ShardedSampler(len(ds), rank, world, seed=cfg.seed)
        loader = training.make_loader(ds, cfg.batch_size, shuffle=False, sampler=sampler)
        for epoch, scenario, steps in ((1, "even", 2), (2, "uneven", 3 - rank)):
            sampler.set_epoch(epoch)
            with ddp.join():
                for _, batch in zip(range(steps), loader):
                    result = training.train_step(ddp, batch, optimizer, scaler, cfg, device)
                    if not result.finite:
                        raise RuntimeError(f"rank {rank}: non-finite step on {batch.ids}")
                    saved["ids"].append(list(batch.ids))
            saved[scenario] = _params(model)
        torch.save(saved, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_end_with_identical_weights(small_corpus, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(small_corpus), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert any(not torch.equal(r0["init"][n], r1["init"][n]) for n in r0["init"])  # they did start apart
    for scenario in ("even", "uneven"):
        different = [n for n in r0[scenario] if not torch.equal(r0[scenario][n], r1[scenario][n])]
        assert not different, f"{scenario}: parameters differ across ranks: {different[:5]}"
    assert any(not torch.equal(r0["even"][n], r0["init"][n]) for n in r0["init"])  # the steps changed the weights
    ids0 = {i for batch in r0["ids"][:2] for i in batch}
    ids1 = {i for batch in r1["ids"][:2] for i in batch}
    assert ids0 and ids1 and ids0.isdisjoint(ids1)  # each rank trained on its own shard


def test_train_py_under_torchrun_two_processes(small_corpus, tmp_path):
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"model": "i3d_small"}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py", "--skip-gate",
           "--epochs", "1", "--data_dir", str(small_corpus), "--config", str(config), "--output_dir", str(out), "--beam_width", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["skipped_gate"] is True
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["frames_per_s"] > 0  # one writer: rank 0 only
    model = training.build_model(load_config(config), len(ckpt["vocab"]) + 1)
    model.load_state_dict(ckpt["model"])  # a plain (non-DDP) state dict: no "module." prefixes

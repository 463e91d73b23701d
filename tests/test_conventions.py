"""Conventions declared in the configuration instead of adapted in code: a model returning
[T, B, V] without lengths, logits, items with other key names, label ids of the user's own
vocabulary with the blank at its last index, the user's collate. Each works (the checks judge it
through model.components.UserModel and UserVocabulary), each misuse gets a one-line error naming
the key, and a label id on the blank index or outside the vocabulary fails `labels`, naming the
samples. The incident's shape in its own conventions (tests/outside/incident_native) needs no
adapter code."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.causes import link_causes, root_causes
from harness.context import HarnessContext
from harness.findings import FAIL, PASS, SKIP, WARN
from harness.suite import CHEAP, expand, run_check
from model.components import UserModel
from model.config import TrainConfig, load_config
from model.ctc import ctc_loss_per_sample

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "tests" / "outside" / "incident_native"
HERE = "tests.test_conventions:"
VOCAB_LIST = ["A", "B", "C", "D", "<blank>"]  # the user's ids 0..3, the blank last (4)
BLANK = 4
WIDTH = 6

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- a tiny user project


def _item(split: str, i: int, keys=("video_id", "x", "labels"), as_names: bool = False) -> dict:
    """A sample whose frames show its glosses (a one-hot channel a gloss, 3 frames each, a gap between)."""
    rng = np.random.default_rng([("train", "dev", "test").index(split), i])
    labels = [int(g) for g in rng.integers(0, 4, size=1 + i % 3)]
    frames = []
    for g in labels:
        frames += [np.eye(WIDTH)[g]] * 3 + [np.zeros(WIDTH)] * 2
    x = np.asarray(frames, dtype=np.float32) + rng.normal(0, 0.02, (len(frames), WIDTH)).astype(np.float32)
    glosses = " ".join(VOCAB_LIST[g] for g in labels) if as_names else labels
    return dict(zip(keys, (f"{split}-{i}", torch.from_numpy(x), glosses)))


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


SIZES = {"train": 6, "dev": 2, "test": 2}


def native_items(split):
    """{"video_id", "x", "labels": ids of VOCAB_LIST}"""
    return Items([_item(split, i) for i in range(SIZES[split])])


def named_items(split):
    """{"id", "features", "glosses": "A B"}: the project's own item keys."""
    return Items([_item(split, i, ("id", "features", "glosses"), as_names=True) for i in range(SIZES[split])])


def blank_label_items(split):
    """train-1 holds the blank's id 4 as a label."""
    items = [_item(split, i) for i in range(SIZES[split])]
    if split == "train":
        items[1]["labels"] = items[1]["labels"] + [BLANK]
    return Items(items)


def outside_items(split):
    """train-2 holds id 7 (V = 5), dev-0 holds id -1."""
    items = [_item(split, i) for i in range(SIZES[split])]
    if split == "train":
        items[2]["labels"] = [7] + items[2]["labels"]
    if split == "dev":
        items[0]["labels"] = [-1]
    return Items(items)


class PerFrame(nn.Module):
    """A per-frame linear model whose forward returns output(scores [B, T, V], lengths)."""

    def __init__(self, vocab_size, input_dim, output, stride=1, with_output_lengths=True):
        super().__init__()
        self.head = nn.Linear(input_dim, vocab_size)
        self.output, self.stride = output, stride
        if with_output_lengths:
            self.output_lengths = lambda lengths: (torch.as_tensor(lengths) + self.stride - 1) // self.stride

    def forward(self, x, lengths):
        return self.output(self.head(x[:, :: self.stride]), lengths)


def tbv_model(vocab_size, input_dim):
    """[T, B, V] log-probs, no lengths, no output_lengths (nn.CTCLoss's layout)."""
    return PerFrame(vocab_size, input_dim, lambda s, lengths: s.log_softmax(-1).transpose(0, 1), with_output_lengths=False)


def logits_model(vocab_size, input_dim):
    """([B, T, V] logits, lengths)."""
    return PerFrame(vocab_size, input_dim, lambda s, lengths: (s, lengths))


def strided_model(vocab_size, input_dim):
    """[B, T/2, V] log-probs, no lengths returned, output_lengths given."""
    return PerFrame(vocab_size, input_dim, lambda s, lengths: s.log_softmax(-1), stride=2)


def strided_model_without_lengths(vocab_size, input_dim):
    """[B, T/2, V] log-probs, and nothing says how many frames are valid."""
    return PerFrame(vocab_size, input_dim, lambda s, lengths: s.log_softmax(-1), stride=2, with_output_lengths=False)


def _pad(items, key="x"):
    lengths = torch.tensor([len(it[key]) for it in items])
    return nn.utils.rnn.pad_sequence([it[key] for it in items], batch_first=True), lengths


def dict_collate(items):
    x, lengths = _pad(items)
    return {"x": x, "lengths": lengths, "labels": torch.cat([torch.tensor(it["labels"]) for it in items]),
            "target_lengths": torch.tensor([len(it["labels"]) for it in items]), "video_id": [it["video_id"] for it in items]}


def sorting_collate(items):
    """Longest first (for packed RNNs), with the ids: the order is the collate's."""
    return dict_collate(sorted(items, key=lambda it: -len(it["x"])))


def sorting_collate_without_ids(items):
    batch = sorting_collate(items)
    del batch["video_id"]
    return batch


def shifted_collate(items):
    """Targets one past the items' labels."""
    batch = dict_collate(items)
    batch["labels"] = batch["labels"] + 1
    return batch


NATIVE_KEYS = {"id": "video_id", "features": "x", "glosses": "labels"}


def native_config(**changes) -> TrainConfig:
    values = dict(dataset=HERE + "native_items", model=HERE + "tbv_model", item_keys=NATIVE_KEYS, vocab=list(VOCAB_LIST), blank=BLANK,
                  output_layout="TBV", device="cpu", batch_size=4, seed=0)
    values.update(changes)
    return TrainConfig(**values)


def run(cfg, names) -> dict:
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        return {c.label(p): run_check(c, ctx, p) for c, p in expand(cfg, names, configured_only=True)}


MODEL_CHECKS = ("contract", "labels", "ctc_feasibility", "forward", "loss_at_init", "gradients")


def assert_pass(findings: dict, *names):
    for name in names or findings:
        assert findings[name].status == PASS, findings[name].message()


# ----------------------------------------------------------------------------- each convention works


def test_a_tbv_model_without_lengths_with_int_labels_and_the_blank_last_passes(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB_LIST) + "\n")
    findings = run(native_config(vocab=str(vocab)), MODEL_CHECKS)
    assert_pass(findings)
    contract = findings["contract"].summary
    for words in ("UserModel", "output [T', B, V] (output_layout = 'TBV') read as [B, T', V]",
                  "no output lengths returned: T' = T, so the input lengths were assumed",
                  "the blank at index 4 moved to 0", "vocab.txt: 4 glosses + the blank at the last index (blank = 4), V = 5"):
        assert words in contract, contract


def test_the_adapter_moves_the_blank_to_0_and_keeps_every_ctc_loss():
    """The user's column `blank` is the project's column 0; with the targets permuted alike, the
    CTC loss of every sample is the one the user's own convention gives."""
    ctx = HarnessContext(native_config())
    model = ctx.model()
    assert isinstance(model, UserModel) and isinstance(model.inner, PerFrame)
    assert [n for n, _ in model.named_modules()][1:] == ["inner", "inner.head"]
    assert set(model.state_dict()) == {"head.weight", "head.bias"}  # the user's own names
    batch = ctx.probe_batch()
    model.eval()
    with torch.no_grad():
        log_probs, out_lengths = model(batch.features, batch.lengths)
        user = model.inner(batch.features, batch.lengths)  # [T, B, V], the user's order
    assert torch.equal(log_probs[..., 0], user.transpose(0, 1)[..., BLANK])
    assert torch.equal(out_lengths, batch.lengths)
    mine = ctc_loss_per_sample(log_probs, out_lengths, batch.targets, batch.target_lengths)
    targets = ctx.user_vocab.to_user(batch.targets)
    assert int(targets.max()) < BLANK and int(batch.targets.min()) > 0
    theirs = F.ctc_loss(user, targets, batch.lengths, batch.target_lengths, blank=BLANK, reduction="none") / batch.target_lengths
    assert torch.allclose(mine, theirs, atol=1e-5), (mine, theirs)


@pytest.mark.parametrize("vocab", ["list", "table", "module", "json"])
def test_the_vocabulary_may_be_a_list_a_table_a_module_attribute_or_json(vocab, tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('{"A": 0, "B": 1, "C": 2, "D": 3}')
    value = {"list": VOCAB_LIST[:4], "table": {g: i for i, g in enumerate(VOCAB_LIST[:4])}, "module": HERE + "VOCAB_LIST",
             "json": str(path)}[vocab]
    findings = run(native_config(vocab=value), ("contract", "labels", "forward"))
    assert_pass(findings)
    assert "V = 5" in findings["contract"].summary and "blank at the last index" in findings["contract"].summary


def test_logits_are_normalized_when_declared_and_detected_with_auto():
    cfg = native_config(dataset=HERE + "named_items", item_keys={}, model=HERE + "logits_model", output_layout="BTV")
    assert run(cfg, ["forward"])["forward"].status == FAIL  # output = "log_probs" (default): the forward check sees logits
    declared = run(cfg.replace(output="logits"), MODEL_CHECKS)
    assert_pass(declared)
    assert "output = 'logits': log_softmax over V applied" in declared["contract"].summary
    auto = run(cfg.replace(output="auto"), ("contract", "forward"))
    assert_pass(auto)
    assert "output = 'auto' found logits" in auto["contract"].summary, auto["contract"].summary
    found = run(native_config(output="auto"), ("contract",))["contract"].summary
    assert "output = 'auto' found log-probabilities" in found, found


def test_a_strided_output_without_lengths_uses_output_lengths_or_is_a_contract_error():
    cfg = native_config(model=HERE + "strided_model", output_layout="BTV")
    findings = run(cfg, ("contract", "ctc_feasibility", "forward", "loss_at_init"))
    assert_pass(findings)
    assert "T' = 12 for T = 24, so the model's output_lengths(lengths) was used" in findings["contract"].summary
    broken = run(cfg.replace(model=HERE + "strided_model_without_lengths"), ("contract", "forward"))
    assert broken["contract"].status == FAIL and "\n" not in broken["contract"].summary.split(":\n  - ")[1]
    assert "returns no output lengths and T' = 12 frames for T = 24" in broken["contract"].summary, broken["contract"].summary
    assert "output_lengths(lengths) method" in broken["contract"].summary
    assert broken["forward"].status == SKIP and "contract" in broken["forward"].summary


def test_a_layout_declared_wrong_is_named_by_the_contract():
    broken = run(native_config(output_layout="BTV"), ("contract",))["contract"]
    assert broken.status == FAIL
    assert "read as [B, T, V] (output_layout = 'BTV') has batch size 24 for a batch of 2" in broken.summary, broken.summary
    assert "set output_layout = 'TBV'" in broken.summary


def test_items_with_names_of_their_own_are_read_by_item_keys():
    findings = run(native_config(), ("contract", "labels"))
    assert_pass(findings)
    alias = run(native_config(item_keys={"id": "video_id", "features": "x", "labels": "labels"}), ("contract", "labels"))
    assert_pass(alias)  # "labels" is another name for "glosses"
    ctx = HarnessContext(native_config())
    assert [r.id for r in ctx.split_records("train")][:2] == ["train-0", "train-1"]
    missing = run(native_config(item_keys={"id": "video_id"}), ("contract",))["contract"]
    assert missing.status == FAIL and "missing key(s) ['features', 'glosses']" in missing.summary, missing.summary
    assert "expected ['video_id', 'features', 'glosses']" in missing.summary


def test_int_labels_without_a_vocabulary_ask_for_one():
    f = run(native_config(vocab=None, blank=0, output_layout="TBV"), ("contract",))["contract"]
    assert f.status == FAIL
    assert "labels are integer ids" in f.summary and 'vocab = "vocab.txt"' in f.summary, f.summary


@pytest.mark.parametrize("collate", ["dict_collate", "sorting_collate"])
def test_the_users_collate_builds_the_batches(collate):
    cfg = native_config(collate_fn=HERE + collate)
    findings = run(cfg, ("contract", "forward", "loss_at_init", "gradients"))
    assert_pass(findings)
    assert f"collate_fn '{HERE}{collate}' batches the items" in findings["contract"].summary
    ctx = HarnessContext(cfg)
    indices = ctx.probe_indices()[:4]
    batch = ctx.batch(indices)
    ds = ctx.dataset()
    by_id = {ds[i].id: ds[i] for i in indices}
    for row, sid in enumerate(batch.ids):  # each row is the sample it names, in the collate's order
        n = by_id[sid].length
        assert int(batch.lengths[row]) == n and torch.equal(batch.features[row, :n], by_id[sid].features)
    if collate == "sorting_collate":
        assert batch.lengths.tolist() == sorted(batch.lengths.tolist(), reverse=True)


@pytest.mark.parametrize("collate, words", [
    ("sorting_collate_without_ids", ("returned lengths", "and no ids", "their ids beside them")),
    ("shifted_collate", ("the targets of sample 'train-0' are", "its item's labels")),
])
def test_a_collate_that_breaks_its_contract_is_named(collate, words):
    f = run(native_config(collate_fn=HERE + collate), ("contract",))["contract"]
    assert f.status == FAIL and all(w in f.summary for w in words), f.summary
    assert f"collate_fn = '{HERE}{collate}'" in f.summary


# ----------------------------------------------------------------------------- the labels check


def test_a_gloss_on_the_blank_index_fails_labels_naming_the_sample():
    f = run(native_config(dataset=HERE + "blank_label_items"), ("labels",))["labels"]
    assert f.status == FAIL
    assert "a gloss on the blank index: 1 sample(s) hold label id 4, the blank's index" in f.summary and "train-1 (train)" in f.summary, f.summary
    assert f.samples == ["train-1"]
    # the other checks read the sample without that id: one root cause
    findings = link_causes(list(run(native_config(dataset=HERE + "blank_label_items"), MODEL_CHECKS).values()))
    assert [r.check for r in root_causes(findings)] == ["labels"]


def test_ids_outside_the_vocabulary_fail_labels_naming_the_samples():
    f = run(native_config(dataset=HERE + "outside_items"), ("labels",))["labels"]
    assert f.status == FAIL
    assert "label ids outside the vocabulary: 2 sample(s) hold ids [-1, 7]" in f.summary and "has ids 0..4" in f.summary, f.summary
    assert set(f.samples) == {"train-2", "dev-0"}


def test_healthy_labels_twin_passes():
    f = run(native_config(), ("labels",))["labels"]
    assert f.status == PASS and "4 glosses + blank" in f.summary, f.summary


# ----------------------------------------------------------------------------- invalid keys


@pytest.mark.parametrize("changes, words", [
    ({"output_layout": "NTV"}, ("output_layout='NTV'", "'BTV'", "'TBV'")),
    ({"output": "probs"}, ("output='probs'", "'log_probs'", "'logits'", "'auto'")),
    ({"item_keys": {"video": "video_id"}}, ("item_keys has key 'video'", "allowed: id, features, glosses, labels")),
    ({"item_keys": {"glosses": "labels", "labels": "y"}}, ("item_keys maps both 'glosses'", "keep one")),
    ({"item_keys": {"id": 3}}, ("item_keys.id=3", "non-empty string")),
    ({"item_keys": ["video_id"]}, ("item_keys=['video_id']", "a table mapping")),
    ({"vocab": 3}, ("vocab=3", "a file of one gloss a line")),
    ({"vocab": ["A", ""]}, ("vocab[1]=''", "non-empty string")),
    ({"vocab": {"A": 0, "B": 0}}, ("vocab gives id 0 to ['A', 'B']",)),
    ({"vocab": ["A", "B"], "blank": 5}, ("blank=5 is beyond the vocabulary's ids 0..1", "blank=2 puts it right after the last gloss")),
    ({"blank": -1}, ("blank=-1", "an int >= 0")),
    ({"blank": True}, ("blank=True", "an int >= 0")),
    ({"collate_fn": "collate"}, ("collate_fn='collate'", "'module.path:attribute'")),
    ({"train_step": "loop.step"}, ("train_step='loop.step'", "'module.path:attribute'")),
    ({"dataset": None, "item_keys": {}, "collate_fn": "a:b"}, ("collate_fn='a:b' needs dataset",)),
    ({"model": "i3d_teacher", "output": "logits", "output_layout": "BTV"}, ("output='logits' describes a model factory of yours", "'i3d_teacher'")),
])
def test_each_invalid_key_is_one_line_naming_key_and_value(changes, words):
    with pytest.raises(ValueError) as err:
        native_config(**changes)
    text = str(err.value)
    assert "\n" not in text and text.startswith("invalid training configuration: "), text
    assert all(w in text for w in words), text


def test_a_vocabulary_file_that_cannot_be_read_fails_the_contract_in_one_line(tmp_path):
    f = run(native_config(vocab="no_such_vocab.txt", config_dir=str(tmp_path)), ("contract", "labels"))
    assert f["contract"].status == FAIL and "vocab = 'no_such_vocab.txt': no such file" in f["contract"].summary
    assert "\n" not in f["contract"].summary
    assert f["labels"].status == SKIP and "contract" in f["labels"].summary
    bad = tmp_path / "vocab.txt"
    bad.write_text("A\n\nB\n")
    f = run(native_config(vocab=str(bad)), ("contract",))["contract"]
    assert f.status == FAIL and "line 2 is empty" in f.summary, f.summary
    bad.write_text("A\nB\nA\n<blank>\n")
    f = run(native_config(vocab=str(bad), blank=3), ("contract",))["contract"]
    assert f.status == FAIL and "gloss 'A' has ids [0, 2]" in f.summary, f.summary
    # the blank's name at another index than the declared blank: a blank declared at the wrong index
    bad.write_text("A\nB\n<blank>\n")
    f = run(native_config(vocab=str(bad), blank=0), ("contract",))["contract"]
    assert f.status == FAIL and "id 2 is '<blank>', the blank's name, but blank = 0: set blank = 2" in f.summary, f.summary


# ----------------------------------------------------------------------------- the incident's shape, natively


NATIVE_KEYS_ALLOWED = {"dataset", "collate_fn", "model", "train_step", "item_keys", "vocab", "blank", "output_layout", "output", "lr",
                       "device", "batch_size", "seed"}


def native(config: str, names=CHEAP) -> dict:
    cfg = load_config(NATIVE / f"{config}.toml")
    ctx = HarnessContext(cfg)
    with np.errstate(all="ignore"):
        findings = [run_check(c, ctx, p) for c, p in expand(cfg, names, configured_only=True)]
    return {f.check: f for f in link_causes(findings)}


def test_incident_native_needs_no_adapter_code():
    """Its configurations only name its factories and conventions; none of its modules imports this project."""
    import tomllib

    for path in NATIVE.glob("*.toml"):
        assert set(tomllib.loads(path.read_text())) <= NATIVE_KEYS_ALLOWED, path
    for path in NATIVE.glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(model|data|harness)\b", path.read_text(), re.M), path


def test_incident_native_healthy_has_no_fail_and_the_skipping_step_warns():
    """Every check, overfit included (its own step reaches 0% WER on the 4 shortest samples)."""
    findings = native("harness", names=None)
    failed = [f.message() for f in findings.values() if f.status == FAIL]
    assert not failed, "\n".join(failed)
    assert "the input lengths were assumed" in findings["contract"].summary and "blank at index 12 moved to 0" in findings["contract"].summary
    step = findings["train_step"]
    assert step.status == WARN and "skips batches with a non-finite loss" in step.summary, step.message()
    assert "reduction 'mean'" in step.summary and step.samples
    assert findings["smoke"].status == PASS and "native_loop:train_step" in findings["smoke"].summary
    assert findings["overfit"].status == PASS, findings["overfit"].message()


def test_incident_native_fixed_step_passes():
    step = native("fixed")["train_step"]
    assert step.status == PASS and "stops it: it raised FloatingPointError" in step.summary, step.message()


def test_incident_native_shifted_vocabulary_fails_labels_alone():
    findings = native("shifted_vocab")
    roots = root_causes(list(findings.values()))
    assert [f.check for f in roots] == ["labels"], "\n".join(f.message() for f in findings.values() if f.status == FAIL)
    text = roots[0].summary
    assert "a gloss on the blank index" in text and "label id 12" in text and "shifted by one" in text, text
    assert roots[0].samples and all(s.startswith("demo-") for s in roots[0].samples)

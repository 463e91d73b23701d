"""Faults of the data: corpus files (Inf, pixel coordinates, z in other units, sequences too
short for CTC), the manifest and vocabulary (empty glosses, a stale or off-by-one vocabulary, a
recording in two splits), and the dataset's imputation and normalization."""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
from typing import Callable
from unittest import mock

import numpy as np

from data.corpus import SampleRecord, write_manifest
from data.dataset import Vocabulary
from data.layout import COORDS, LAYOUT
from data.normalize import Normalizer
from harness.faults.base import Setup, manifest_records, patched, rewrite_features, train_records


def without_std_floor():
    """Patch Normalizer so its std floor is 0 (the constructor refuses 0, so set it afterwards):
    a z-score divides by the raw std, as the incident's dataset did."""
    original = Normalizer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.std_floor = 0.0

    return mock.patch.object(Normalizer, "__init__", init)


def hide_hand(setup: Setup, records, hand: str = "left_hand") -> None:
    """The hand is never detected in these samples: all its landmarks NaN in every frame."""

    def fn(a):
        a[:, LAYOUT[hand]] = np.nan
        return a

    rewrite_features(setup, records, fn)


# ----------------------------------------------------------------------------- the dataset's imputation and normalization


@contextlib.contextmanager
def zscore_no_floor(setup):
    hide_hand(setup, train_records(setup, every=3))
    cfg = setup.cfg.replace(normalize="per_sample", impute="zero")
    with patched(dataclasses.replace(setup, cfg=cfg), without_std_floor()) as s:
        yield s


@contextlib.contextmanager
def no_imputation(setup):
    def impute(raw, method="ffill"):
        return np.array(raw, dtype=np.float32, copy=True)  # NaN stays NaN

    with patched(setup, mock.patch("data.dataset.impute", impute)):
        yield setup


# ----------------------------------------------------------------------------- corpus files


@contextlib.contextmanager
def inf_in_file(setup):
    def fn(a):
        a[len(a) // 2, 0] = np.inf  # one pose x value of one frame
        return a

    rewrite_features(setup, train_records(setup, limit=1), fn)
    yield setup


@contextlib.contextmanager
def pixel_coordinates(setup):
    def fn(a):
        pts = a.reshape(len(a), -1, COORDS)
        pts[:, :, 0] *= 1280  # x, y in pixels of a 1280x720 frame; NaN stays NaN
        pts[:, :, 1] *= 720
        return a

    rewrite_features(setup, train_records(setup, every=5, limit=2), fn)
    yield setup


def truncate_samples(setup, n_frames: int = 4, limit: int = 3) -> None:
    # 4 frames -> ceil(4 / 4) = 1 output frame, fewer than any demo sentence's >= 2 glosses
    rewrite_features(setup, train_records(setup, every=4, limit=limit), lambda a: a[:n_frames])


@contextlib.contextmanager
def z_in_other_units(setup):
    def fn(a):
        a.reshape(len(a), -1, COORDS)[:, :, 2] *= 250  # z scaled like pixels; NaN stays NaN
        return a

    rewrite_features(setup, train_records(setup, every=4, limit=3), fn)
    yield setup


@contextlib.contextmanager
def ctc_infeasible(setup):
    truncate_samples(setup)
    yield setup


# ----------------------------------------------------------------------------- manifest and vocabulary


@contextlib.contextmanager
def empty_glosses(setup):
    records = manifest_records(setup)
    victim = next(r for r in records if r.split == "train")
    write_manifest(setup.corpus, [dataclasses.replace(r, glosses=()) if r is victim else r for r in records])
    setup.touched.append(victim.id)
    yield setup


def vocabulary_patch(setup, make: Callable[[Vocabulary], Vocabulary], touched_gloss: Callable[[Vocabulary], str]):
    """Patch Vocabulary.from_records to return make(correct vocabulary); record the train
    samples that use the gloss the fault affects."""
    original = Vocabulary.from_records
    correct = original(manifest_records(setup))
    gloss = touched_gloss(correct)
    setup.touched += [r.id for r in train_records(setup) if gloss in r.glosses]
    return mock.patch.object(Vocabulary, "from_records", classmethod(lambda cls, records: make(original(records))))


@contextlib.contextmanager
def gloss_not_in_vocabulary(setup):
    # a stale vocabulary file from an older corpus version: the newest gloss is missing
    patch = vocabulary_patch(setup, lambda v: Vocabulary(v.to_list()[:-1]), lambda v: v.to_list()[-1])
    with patched(setup, patch):
        yield setup


class NoBlankVocabulary(Vocabulary):
    """Off by one: glosses numbered from 0, so the first gloss gets the CTC blank's id."""

    def __init__(self, glosses):
        self.itos = list(glosses)
        self.stoi = {g: i for i, g in enumerate(self.itos)}


@contextlib.contextmanager
def blank_in_targets(setup):
    patch = vocabulary_patch(setup, lambda v: NoBlankVocabulary(v.to_list()), lambda v: v.to_list()[0])
    with patched(setup, patch):
        yield setup


@contextlib.contextmanager
def train_test_duplicate(setup):
    records = manifest_records(setup)
    source = next(r for r in records if r.split == "train")
    copy = SampleRecord(f"{source.id}-copy", "test", source.glosses, "features/leaked-copy.npy", signer=source.signer, fps=source.fps)
    shutil.copyfile(setup.corpus / source.path, setup.corpus / copy.path)
    write_manifest(setup.corpus, records + [copy])
    setup.touched += [source.id, copy.id]
    yield setup

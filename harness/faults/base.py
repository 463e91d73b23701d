"""What a fault is and what it is injected into: a Setup (a private corpus copy and its
TrainConfig), a Fault (its injection and the checks that must catch it), and the helpers the
injections share (pick records, rewrite feature files, patch, change the configuration)."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from data.corpus import SampleRecord, atomic_save_npy, read_manifest
from model.config import TrainConfig


@dataclass
class Setup:
    corpus: Path  # a private copy the fault may rewrite
    cfg: TrainConfig  # its data_dir is `corpus`
    touched: list = field(default_factory=list)  # ids of the samples the fault altered (for assertions)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str  # what breaks, how it shows in training, and the source where one exists
    expected_checks: tuple  # check names (CHECKS keys) that must FAIL
    inject: Callable[[Setup], ContextManager[Setup]]
    cause: dict = field(default_factory=dict)  # check -> words its failing message must contain
    samples: str = ""  # "all": every touched id named in the expected finding; "any": at least one
    modality: str = ""  # offending modality/part the expected finding must name, if any
    feature_prefix: str = ""  # some named feature must start with this, if set
    thresholds: dict = field(default_factory=dict)  # overrides that only make the run faster


# ----------------------------------------------------------------------------- injection helpers


def manifest_records(setup: Setup) -> list[SampleRecord]:
    return read_manifest(setup.corpus, validate=False)


def train_records(setup: Setup, every: int = 1, limit: int | None = None) -> list[SampleRecord]:
    """Every `every`-th train record (manifest order), at most `limit`: deterministic picks."""
    picked = [r for r in manifest_records(setup) if r.split == "train"][::every]
    return picked[:limit] if limit else picked


def rewrite_features(setup: Setup, records, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace each record's feature file by fn(array) ([T, 1629] float32 in, any array out)."""
    for rec in records:
        path = setup.corpus / rec.path
        atomic_save_npy(path, fn(np.load(path).astype(np.float32)))
        setup.touched.append(rec.id)


@contextlib.contextmanager
def patched(setup: Setup, *patchers):
    with contextlib.ExitStack() as stack:
        for p in patchers:
            stack.enter_context(p)
        yield setup


def configured(**changes):
    """inject: a configuration change only."""

    @contextlib.contextmanager
    def inject(setup: Setup):
        yield dataclasses.replace(setup, cfg=setup.cfg.replace(**changes))

    return inject

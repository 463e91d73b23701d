"""Model-ready samples from a corpus: imputation, temporal features, normalization, vocabulary.

`MediaPipeFeatureDataset` is the single owner of normalization: each sample comes out
normalized exactly once, and every `Batch` carries the name of the normalization applied, so
anything downstream can tell a second application.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.augment import FEATURE_MIRROR_COLUMNS, FEATURE_MIRROR_SIGN, Augmenter, lead_canonical, min_frames_for, mirror, mirror_features, sample_rng
from data.corpus import Corpus, CorpusError, SampleRecord, atomic_write_text
from data.layout import FEATURE_DIM, RAW_DIM, modality_columns, parse_modalities
from data.normalize import CLIP, STD_FLOOR, DoubleNormalizationError, FeatureStats, Normalizer, RunningStats, impute
from data.temporal import full_features

BLANK = "<blank>"


class UnknownGlossError(CorpusError):
    pass


class Vocabulary:
    """gloss -> id with 0 reserved for the CTC blank; built from the train split.

    There is no <unk>: a gloss outside the vocabulary cannot be predicted, so encoding one is an
    error (UnknownGlossError names the sample). Dev/test datasets drop such glosses from their
    *targets* (loss) but keep the full reference text for WER, so they still count as errors.
    """

    def __init__(self, glosses):
        self.itos = [BLANK] + list(glosses)
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("vocabulary has duplicate glosses")
        self.stoi = {g: i for i, g in enumerate(self.itos)}

    blank_id = 0

    @classmethod
    def from_records(cls, records) -> "Vocabulary":
        seen = {}
        for rec in records:
            if rec.split == "train":
                for g in rec.glosses:
                    seen.setdefault(g, None)
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, gloss) -> bool:
        return gloss in self.stoi and gloss != BLANK

    def encode(self, glosses, sample_id: str = "?", unknown: str = "error") -> list[int]:
        ids = []
        for g in glosses:
            if g in self:
                ids.append(self.stoi[g])
            elif unknown == "error":
                raise UnknownGlossError(f"sample {sample_id!r}: gloss {g!r} is not in the vocabulary built from the train split")
        return ids

    def decode(self, ids) -> list[str]:
        return [self.itos[i] for i in ids if i != self.blank_id]

    def to_list(self) -> list[str]:
        return self.itos[1:]

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_list(), ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path) -> "Vocabulary":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class Sample:
    id: str
    features: torch.Tensor  # [T, F] float32, normalized
    targets: torch.Tensor  # [L] long gloss ids (no blank)
    glosses: tuple[str, ...]  # reference text, including glosses outside the vocabulary
    normalization: str

    @property
    def length(self) -> int:
        return int(self.features.shape[0])


@dataclass
class Batch:
    features: torch.Tensor  # [B, T, F] float32, zero-padded
    lengths: torch.Tensor  # [B] long
    targets: torch.Tensor  # [sum L] long, concatenated
    target_lengths: torch.Tensor  # [B] long
    ids: list[str]
    glosses: list[tuple[str, ...]]
    normalization: str  # the normalization the dataset applied ("none" if none)

    def to(self, device) -> "Batch":
        return Batch(
            self.features.to(device, non_blocking=True),
            self.lengths.to(device),
            self.targets.to(device),
            self.target_lengths.to(device),
            self.ids,
            self.glosses,
            self.normalization,
        )

    def __len__(self) -> int:
        return len(self.ids)


def collate(samples: list[Sample]) -> Batch:
    """Pad to the longest sample; targets concatenated (CTC's 1-D form) with their lengths."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    norms = {s.normalization for s in samples}
    if len(norms) != 1:
        raise DoubleNormalizationError(f"samples with different normalizations in one batch: {sorted(norms)}")
    lengths = torch.tensor([s.length for s in samples], dtype=torch.long)
    width = samples[0].features.shape[1]
    # pad in numpy: a torch slice copy is a parallel op that stalls on a busy 2-core machine
    padded = np.zeros((len(samples), int(lengths.max()), width), dtype=np.float32)
    for i, s in enumerate(samples):
        padded[i, : s.length] = s.features.numpy()
    feats = torch.from_numpy(padded)
    return Batch(
        features=feats,
        lengths=lengths,
        targets=torch.cat([s.targets for s in samples]) if samples else torch.zeros(0, dtype=torch.long),
        target_lengths=torch.tensor([len(s.targets) for s in samples], dtype=torch.long),
        ids=[s.id for s in samples],
        glosses=[s.glosses for s in samples],
        normalization=norms.pop(),
    )


def model_features(raw_or_full: np.ndarray, impute_method: str = "ffill") -> tuple[np.ndarray, np.ndarray]:
    """Feature file -> (imputed finite [T, 6516] features, raw [T, 1629] with NaN)."""
    raw, temporal = full_features(raw_or_full)
    return np.concatenate([impute(raw, impute_method), temporal], axis=1), raw


def compute_train_stats(corpus: Corpus, impute_method: str = "ffill", lead_hand: str | None = None) -> FeatureStats:
    """Global mean/std over every train frame, in one streaming pass (memory independent of size);
    with `lead_hand`, of the samples as canonicalisation serves them (lead_canonical)."""
    running = RunningStats(FEATURE_DIM)
    for rec in corpus.split("train"):
        arr = corpus.load(rec)
        feats, _ = model_features(arr if lead_hand is None else lead_canonical(arr, lead_hand), impute_method)
        running.update(feats)
    return running.stats()


class MediaPipeFeatureDataset(torch.utils.data.Dataset):
    """Samples of one split, model-ready.

    Pipeline per sample: load (memory-mapped) -> [augment, train split only] -> temporal block
    from raw landmarks (0 where a landmark is missing) -> impute missing landmarks -> normalize
    (once) -> select modalities.

    `augment` (data/augment.py: a TrainConfig.augment table) changes the raw landmarks right
    after loading, so the temporal block, imputation and normalization follow the augmented
    motion. Each draw is seeded by (augment_seed, epoch, index): the epoch given to
    set_epoch(), else how many times this dataset object has served that index (the epoch
    with train.py's in-process loader), so a run is reproducible and every epoch differs.
    Augmented samples are never cached: the cache then keeps the raw landmarks, not features.
    A [T, 6516] file's own temporal block is recomputed from its augmented raw block.

    The default recipe (mirror alone) with body normalization and ffill imputation is served
    from the features instead: a sample has two possible outputs, its unaugmented features and
    their mirror image, which data/augment.py: mirror_features makes from the features directly
    (a column permutation and a sign flip of x, equal to the raw-landmark path up to float32
    rounding); the cache then keeps the unaugmented features, and a draw costs one gather.

    `lead_hand` ("left_hand" / "right_hand", every split): each sample one hand leads is mirrored
    first so that this hand leads it (data/augment.py: lead_canonical), before any augmentation;
    a fixed function of the sample, so its features are cached like unaugmented ones.
    """

    def __init__(
        self,
        corpus_dir,
        split: str = "train",
        vocab: Vocabulary | None = None,
        normalization: str = "global",
        modalities=None,
        impute_method: str = "ffill",
        stats: FeatureStats | None = None,
        std_floor: float = STD_FLOOR,
        clip: float = CLIP,
        corpus: Corpus | None = None,
        cache_bytes: int = 0,
        augment=None,
        augment_seed: int = 0,
        lead_hand: str | None = None,
    ):
        self.corpus = corpus if corpus is not None else Corpus(corpus_dir)
        self.split = split
        self.records: list[SampleRecord] = self.corpus.split(split)
        if not self.records:
            raise CorpusError(f"{self.corpus.dir}: split {split!r} has no samples")
        self.vocab = vocab if vocab is not None else Vocabulary.from_records(self.corpus.records)
        self.modalities = parse_modalities(modalities)
        self.columns = modality_columns(self.modalities)
        self.impute_method = impute_method
        if normalization == "global" and stats is None:
            stats = compute_train_stats(self.corpus, impute_method, lead_hand)
        self.stats = stats
        self.normalizer = Normalizer(normalization, stats=stats, std_floor=std_floor, clip=clip)
        self.normalization = normalization
        # train targets must be fully known; dev/test drop out-of-vocabulary glosses from targets
        self._unknown = "error" if split == "train" else "skip"
        # model-ready features kept in memory after their first load, up to cache_bytes in total:
        # later epochs then skip loading, temporal features and normalization
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, torch.Tensor | np.ndarray] = {}  # features; raw landmarks when augmenting
        self._cached_bytes = 0
        self.augmenter = Augmenter(augment) if augment else None
        if self.augmenter is not None and not self.augmenter:
            self.augmenter = None  # every probability 0
        if self.augmenter is not None and split != "train":
            raise ValueError(f"augmentation is for the train split only; split {split!r} is what the model is scored on")
        self.augment_seed = int(augment_seed)
        self.lead_hand = lead_hand
        if lead_hand is not None:
            lead_canonical(np.zeros((1, RAW_DIM), np.float32), lead_hand)  # a bad name fails here, not at the first sample
        self._epoch: int | None = None
        self._draws: dict[int, int] = {}
        # mirror alone on body-normalized, forward-filled landmarks: mirrored in feature space
        # (the mirror maps each modality onto itself, so it stays within the selected columns)
        self._feature_mirror = None
        if self.augmenter is not None and self.augmenter.mirror_only and normalization == "body" and impute_method == "ffill":
            where = np.full(FEATURE_DIM, -1, dtype=np.int64)
            where[self.columns] = np.arange(len(self.columns))
            columns = where[FEATURE_MIRROR_COLUMNS[self.columns]]
            assert (columns >= 0).all(), "the mirror maps every selected column onto a selected column"
            self._feature_mirror = (columns, FEATURE_MIRROR_SIGN[self.columns], where)
        self._mirror_fill: dict[int, tuple[np.ndarray, np.float32]] = {}  # i -> (fill columns, value) of a cached sample

    def __len__(self) -> int:
        return len(self.records)

    def lengths(self) -> list[int]:
        """Frame counts without loading the data (reads .npy headers through mmap)."""
        return [int(self.corpus.load(r).shape[0]) for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Seed augmentation draws by this epoch (instead of counting draws per sample)."""
        self._epoch = int(epoch)

    def features(self, i: int, draw: int = 0) -> np.ndarray:
        """Model-ready features of sample i; with augmentation, those of draw `draw` (deterministic)."""
        if self._feature_mirror is not None:
            return np.array(self._mirror_draw(i, draw).numpy())
        arr = self._raw(i) if self.augmenter is not None else self.source(i)
        if self.augmenter is not None:
            rng, min_frames = self._augment_rng(i, draw)
            arr = self.augmenter(arr[:, :RAW_DIM], rng, min_frames=min_frames)
        feats, raw = model_features(arr, self.impute_method)
        out = self.normalizer(feats, raw=raw)
        return out[:, self.columns] if len(self.columns) != FEATURE_DIM else out

    def _raw(self, i: int) -> np.ndarray:
        """The file's array, kept in memory up to cache_bytes (what an augmenting dataset caches)."""
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        arr = np.array(self._canonical(self.corpus.load(self.records[i], mmap=False)), dtype=np.float32)  # in memory, not a memmap view
        if self._cached_bytes + arr.nbytes <= self.cache_bytes:
            self._cache[i] = arr
            self._cached_bytes += arr.nbytes
        return arr

    def _augment_rng(self, i: int, draw: int) -> tuple[np.random.Generator, int]:
        """The generator of draw `draw` of sample i and the frames it must keep (CTC)."""
        rec = self.records[i]
        targets = self.vocab.encode(rec.glosses, rec.id, self._unknown)
        repeats = sum(a == b for a, b in zip(targets, targets[1:]))
        return sample_rng(self.augment_seed, draw, i), min_frames_for(len(targets), repeats)

    def _mirror_draw(self, i: int, draw: int) -> torch.Tensor:
        """Draw `draw` of sample i under the mirror-only recipe: its unaugmented features (cached
        within the budget), or their mirror image (mirror_features) when the draw mirrors it."""
        rng, _ = self._augment_rng(i, draw)
        fired = [name for name, _ in self.augmenter.plan(rng)]
        plain = self._cache.get(i)
        fill = self._mirror_fill.get(i)
        if plain is None:
            raw = self._raw_array(i)
            plain = self._model_features_tensor(raw)
            size = plain.numel() * plain.element_size()
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i], self._mirror_fill[i] = plain, self._mirror_fill_of(raw)
                self._cached_bytes += size
                fill = self._mirror_fill[i]
            elif fired:
                fill = self._mirror_fill_of(raw)
        if not fired:
            return plain
        columns, sign, _ = self._feature_mirror
        return torch.from_numpy(mirror_features(plain.numpy(), columns, sign, *fill))

    def _mirror_fill_of(self, raw: np.ndarray) -> tuple[np.ndarray, np.float32]:
        """The selected columns of a mirrored sample that hold the x of a landmark never seen in
        it, and their value: imputation's 0, body-normalized with the mirrored sample's centre and
        shoulder width (the normalizer applied to a frame of zeros, as the raw-landmark path does)."""
        _, _, where = self._feature_mirror
        never_seen_x = np.isnan(raw[:, 0:RAW_DIM:3]).all(axis=0)  # [543], by landmark of the original
        if not never_seen_x.any():
            return np.zeros(0, dtype=np.int64), np.float32(0.0)
        x_columns = np.arange(0, RAW_DIM, 3)
        mirrored = x_columns[never_seen_x[FEATURE_MIRROR_COLUMNS[x_columns] // 3]]  # mirrored x columns from never-seen ones
        fill = where[mirrored]
        fill = fill[fill >= 0]
        value = self.normalizer(np.zeros((1, FEATURE_DIM), dtype=np.float32), raw=mirror(raw))[0, 0]
        return fill, np.float32(value)

    def _raw_array(self, i: int) -> np.ndarray:
        """The [T, 1629] raw landmarks an augmenting dataset starts from (a [T, 6516] file's raw block)."""
        raw = np.asarray(self.corpus.load(self.records[i], mmap=False), dtype=np.float32)[:, :RAW_DIM]
        return np.ascontiguousarray(self._canonical(raw))

    def source(self, i: int) -> np.ndarray:
        """Sample i's landmarks as this dataset starts from them, before imputation, the temporal
        block and normalization: its file, with the configured hand leading (lead_hand)."""
        return self._canonical(self.corpus.load(self.records[i]))

    def _canonical(self, arr: np.ndarray) -> np.ndarray:
        """The file's array with the configured hand leading (lead_canonical), or as it is."""
        return arr if self.lead_hand is None else lead_canonical(arr, self.lead_hand)

    def _model_features_tensor(self, raw: np.ndarray) -> torch.Tensor:
        feats, raw = model_features(raw, self.impute_method)
        out = self.normalizer(feats, raw=raw)
        return torch.from_numpy(np.ascontiguousarray(out[:, self.columns] if len(self.columns) != FEATURE_DIM else out))

    def _features_tensor(self, i: int) -> torch.Tensor:
        if self.augmenter is not None:  # a new draw every time: never cache the output
            draw = self._epoch if self._epoch is not None else self._draws.get(i, 0)
            self._draws[i] = self._draws.get(i, 0) + 1
            if self._feature_mirror is not None:
                return self._mirror_draw(i, draw)
            return torch.from_numpy(np.ascontiguousarray(self.features(i, draw)))
        cached = self._cache.get(i)
        if cached is not None:
            return cached
        x = torch.from_numpy(np.ascontiguousarray(self.features(i)))
        size = x.numel() * x.element_size()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[i] = x
            self._cached_bytes += size
        return x

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        return Sample(
            id=rec.id,
            features=self._features_tensor(i),
            targets=torch.tensor(self.vocab.encode(rec.glosses, rec.id, self._unknown), dtype=torch.long),
            glosses=rec.glosses,
            normalization=self.normalization,
        )

"""The harness as a Python function: `check()` runs the same checks as `python -m harness check`
and `pytest -m compat`, in-process, on a configuration file, a TrainConfig, or the user's own
Python objects (a model factory or an nn.Module instance, a dataset factory or a {split:
Dataset} dict, a batch_transform callable), and returns a `Report`.

    from harness import check

    report = check(model=make_model, dataset={"train": train_ds, "dev": dev_ds}, transform=prepare)
    report.ok, report.roots, report.findings
    report.to_html("harness.html"); report.to_json("findings.json")
    report.raise_for_failures()          # in a test: fails with the root causes and what to do

Objects reach the harness as "module:attribute" specs of a module made for the call (see
`_ObjectModule`), which model.components.import_object resolves like any user module, so the
checks see exactly what a configuration file would name.
"""
from __future__ import annotations

import copy
import itertools
import json
import sys
import time
import types
from pathlib import Path

from harness.findings import FAIL, PASS, SKIP, WARN, Finding, format_findings

DEFAULT_MARKERS = ("compat", "smoke")  # what check() runs when `only` is not given (the overfit run is its own command)
_COUNTER = itertools.count(1)


class HarnessFailure(AssertionError):
    """Raised by Report.raise_for_failures(): the message lists the root causes, each with its
    summary, samples and hint. An AssertionError, so a pytest test that calls it fails (not errors)."""

    def __init__(self, message: str, report: "Report | None" = None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return type(self), (str(self), self.report)


# ----------------------------------------------------------------------------- selection


def select_checks(cfg, only=None, configured_only: bool = True, argument: str = "only") -> list:
    """(check, parameter) pairs of harness/suite.py for `cfg`: every compat and smoke check, or
    exactly those named in `only` (check names such as "model_input", or labels such as
    "padding[model]"; the overfit run only when named). ValueError names an unknown one, as the
    `argument` it came from."""
    from harness.suite import BY_NAME, expand

    if only is None:
        return [(c, p) for c, p in expand(cfg, configured_only=configured_only) if c.marker in DEFAULT_MARKERS]
    wanted = [only] if isinstance(only, str) else list(only)
    every = expand(cfg, configured_only=False)
    labels = {c.label(p) for c, p in every}
    unknown = [n for n in wanted if n not in BY_NAME and n not in labels]
    if unknown:
        shown = f"only={unknown}" if argument == "only" else f"{argument} {' '.join(unknown)}"
        raise ValueError(f"{shown}: no such check; choose from {', '.join(BY_NAME)} (or a label such as 'padding[model]')")
    pairs = expand(cfg, configured_only=configured_only)
    chosen = [(c, p) for c, p in pairs if c.name in wanted or c.label(p) in wanted]
    # a label of another normalization method than the configured one is still run when named
    chosen += [(c, p) for c, p in every if c.label(p) in wanted and (c, p) not in chosen]
    return chosen


# ----------------------------------------------------------------------------- Python objects as specs


def _attr_name(obj, fallback: str) -> str:
    name = getattr(obj, "__name__", None) or type(obj).__name__
    return name if name.isidentifier() and not name.startswith("<") else fallback


class _ObjectModule:
    """A module made for one check() call, holding the user's objects under readable attribute
    names; its "module:attribute" specs go into the TrainConfig. Removed from sys.modules when
    the call ends."""

    def __init__(self):
        self.name = f"_harness_objects_{next(_COUNTER)}"
        self.module = types.ModuleType(self.name, "objects handed to harness.check() (made for one call)")
        sys.modules[self.name] = self.module

    def spec(self, obj, fallback: str) -> str:
        attr = _attr_name(obj, fallback)
        while hasattr(self.module, attr):
            attr += "_"
        setattr(self.module, attr, obj)
        return f"{self.name}:{attr}"

    def close(self) -> None:
        sys.modules.pop(self.name, None)


def _model_factory(model):
    """An nn.Module instance as a factory(vocab_size, input_dim) that returns a deep copy of it
    (each check builds its own model, none shares state with another or with the caller's)."""

    def factory(vocab_size, input_dim, **overrides):
        if overrides:
            raise TypeError(f"model_overrides {sorted(overrides)} apply to a model factory, not to the {type(model).__name__} instance given")
        return copy.deepcopy(model)

    factory.__name__ = type(model).__name__
    return factory


def _dataset_factory(splits: dict):
    missing = [k for k in splits if not isinstance(k, str)]
    if missing:
        raise TypeError(f"dataset: the keys of a {{split: Dataset}} dict are split names ('train', 'dev', 'test'), got {missing!r}")

    def factory(split):
        return splits[split]  # KeyError: the split is absent, as load_external_splits expects

    factory.__name__ = "dataset"
    return factory


def _spec_of(value, key: str, objects: _ObjectModule, expected: str):
    """A component argument as the configuration value: a "module:attribute" string (or a
    registered model name) as it is, an object as the spec of `objects` holding it."""
    from torch import nn

    if value is None or isinstance(value, str):
        return value
    if key == "model":
        if isinstance(value, nn.Module):
            return objects.spec(_model_factory(value), type(value).__name__)
        if callable(value):
            return objects.spec(value, "model")
    elif key == "dataset":
        if isinstance(value, dict):
            return objects.spec(_dataset_factory(value), "dataset")
        if callable(value):
            return objects.spec(value, "dataset")
        if hasattr(value, "__getitem__") and hasattr(value, "__len__"):  # one Dataset: the train split
            return objects.spec(_dataset_factory({"train": value}), "dataset")
    elif callable(value):
        return objects.spec(value, "batch_transform")
    raise TypeError(f"{key}: got {type(value).__name__}; expected {expected}")


_EXPECTED = {
    "model": "'module:attribute', a registered name, a factory(vocab_size, input_dim) or an nn.Module",
    "dataset": "'module:attribute', a factory(split) -> Dataset, a {split: Dataset} dict or one Dataset (the train split)",
    "transform": "'module:attribute' or a callable fn(features [B, T, F], lengths [B]) -> features",
}


def _config(config, overrides: dict):
    """The TrainConfig under test: a file path, a TrainConfig or None (the defaults), with the
    keyword overrides applied."""
    from model.config import TrainConfig, config_fields, load_config

    unknown = sorted(set(overrides) - config_fields())
    if unknown:
        raise TypeError(f"check(): unknown configuration key(s) {unknown}; known: {sorted(config_fields())}")
    if config is None or isinstance(config, (str, Path)):
        return load_config(config, **overrides)
    if isinstance(config, TrainConfig):
        return config.replace(**{k: v for k, v in overrides.items() if v is not None})
    raise TypeError(f"config: got {type(config).__name__}; expected the path of a TOML/JSON configuration or a model.config.TrainConfig")


# ----------------------------------------------------------------------------- check()


def check(config=None, *, model=None, dataset=None, transform=None, data_dir=None, only=None, device="cpu", **config_keys) -> "Report":
    """Run the harness's checks on one training setup and return a Report (never raises for a
    failed check: see Report.raise_for_failures).

    config: path of a TOML/JSON configuration (the file train.py --config reads), a TrainConfig,
        or None (the defaults: this project's model on data_dir or the demo corpus).
    model, dataset, transform: override the configuration's model, dataset and batch_transform;
        each a "module:attribute" string or the Python object itself (see _EXPECTED).
    data_dir: the corpus directory (given to a dataset factory with a data_dir keyword).
    only: check names or labels to run (e.g. ["contract", "model_input", "padding"]); default
        every compat and smoke check of the configured normalization.
    device: where the checks run ("cpu", "cuda", "cuda:1"; None: the configuration's device).
    config_keys: any other TrainConfig field, e.g. batch_size=4, model_overrides={"hidden": 64}; a
        field that names a component as "module:attribute" takes the object too.
    """
    import numpy as np
    import torch

    from harness.causes import link_causes
    from harness.context import HarnessContext
    from harness.suite import run_check

    start = time.perf_counter()
    objects = _ObjectModule()
    try:
        specs = {"model": _spec_of(model, "model", objects, _EXPECTED["model"]),
                 "dataset": _spec_of(dataset, "dataset", objects, _EXPECTED["dataset"]),
                 "batch_transform": _spec_of(transform, "transform", objects, _EXPECTED["transform"])}
        # any other component given as an object (a configuration key whose value is "module:attribute")
        others = {k: objects.spec(v, k) if callable(v) and not isinstance(v, str) else v for k, v in config_keys.items()}
        overrides = {**others, **{k: v for k, v in specs.items() if v is not None}, "data_dir": None if data_dir is None else str(data_dir)}
        if device is not None:
            overrides["device"] = str(device)
        cfg = _config(config, overrides)
        pairs = select_checks(cfg, only, configured_only=True)
        ctx = HarnessContext(cfg)  # on cfg.device, resolved as train.py resolves it
        threads = torch.get_num_threads()
        if ctx.device.type == "cpu":
            torch.set_num_threads(1)  # small probe batches: one thread avoids oversubscription (as the pytest plugin does)
        try:
            with np.errstate(all="ignore"):  # a user dataset dividing by zero: the checks report it, numpy need not warn
                findings = [run_check(c, ctx, p) for c, p in pairs]
        finally:
            torch.set_num_threads(threads)
    finally:
        objects.close()
    return Report(link_causes(findings), seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------- the report


class Report:
    """The findings of one run, root causes first (harness/causes.py)."""

    def __init__(self, findings: list[Finding], seconds: float = 0.0):
        self.findings = list(findings)
        self.seconds = seconds

    # ------------------------------------------------------------------ what was found

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings do not block)."""
        return not self.failed

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.status == FAIL]

    @property
    def warned(self) -> list[Finding]:
        return [f for f in self.findings if f.status == WARN]

    @property
    def roots(self) -> list[Finding]:
        """The failed findings no other failure explains: where to start fixing."""
        from harness.causes import root_causes

        return root_causes(self.findings)

    def __getitem__(self, name: str) -> Finding:
        """The finding of a check label ("padding[model]") or, for a check with one run, its name."""
        for f in self.findings:
            if f.check == name:
                return f
        matches = [f for f in self.findings if f.check.split("[")[0] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise KeyError(f"{name!r} ran {len(matches)} times: ask for one of {[f.check for f in matches]}")
        raise KeyError(f"no finding of {name!r}; the report holds {[f.check for f in self.findings]}")

    def counts(self) -> dict:
        return {s: sum(1 for f in self.findings if f.status == s) for s in (FAIL, WARN, PASS, SKIP)}

    # ------------------------------------------------------------------ failing a test

    def failure_message(self) -> str:
        """The root causes, each with its summary, samples, features and hint; "" when nothing failed."""
        if self.ok:
            return ""
        roots, caused = self.roots, [f for f in self.failed if f.values.get("caused_by")]
        lines = [f"harness: {len(self.failed)} check(s) failed; "
                 f"{'root cause' if len(roots) == 1 else 'root causes'}: {', '.join(f.check for f in roots)}"]
        for f in roots:
            lines.append(f.message().replace("[FAIL] ", "", 1))
        if caused:
            lines.append(f"caused by the above: {', '.join(f.check for f in caused)}")
        return "\n".join(lines)

    def raise_for_failures(self) -> "Report":
        """Raise HarnessFailure (an AssertionError) naming the root causes when a check failed;
        return the report otherwise: `check(...).raise_for_failures()` in a test."""
        __tracebackhide__ = True  # pytest shows the caller's line, not this one
        if not self.ok:
            raise HarnessFailure(self.failure_message(), self)
        return self

    # ------------------------------------------------------------------ output

    def __str__(self) -> str:
        return format_findings(self.findings)

    def __repr__(self) -> str:
        n = self.counts()
        verdict = "FAILED" if not self.ok else "PASSED"
        roots = f" (root: {', '.join(f.check for f in self.roots)})" if self.roots else ""
        return f"<Report {verdict}: {n[FAIL]} failed{roots}, {n[WARN]} warned, {n[PASS]} passed, {n[SKIP]} skipped>"

    def to_dicts(self) -> list[dict]:
        return [f.to_json() for f in self.findings]

    def _repr_html_(self) -> str:
        from harness.report import plot_records, render_summary

        return render_summary(self.to_dicts(), plot_records(self.findings), standalone=True)

    def to_html(self, path) -> Path:
        """Write the report page (verdict, table of checks, plots, each finding's tables); returns the path."""
        from data.corpus import atomic_write_text
        from harness.report import page

        path = Path(path)
        atomic_write_text(path, page(self.findings))
        return path

    def to_json(self, path) -> Path:
        """Write every finding as JSON, in the format of `--diag-json` (Report.from_json reads both)."""
        from data.corpus import atomic_write_text

        path = Path(path)
        doc = {"findings": self.to_dicts(), "exitstatus": 0 if self.ok else 1, "seconds": round(self.seconds, 3)}
        atomic_write_text(path, json.dumps(doc, indent=1, default=str) + "\n")
        return path

    @classmethod
    def from_json(cls, path) -> "Report":
        """A Report from Report.to_json's file or a --diag-json file (plots come back as names only)."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
            raise ValueError(f"{path}: not a findings file (expected a JSON object with a 'findings' list, as Report.to_json writes)")
        return cls([Finding.from_json(d) for d in doc["findings"]], seconds=float(doc.get("seconds") or 0.0))

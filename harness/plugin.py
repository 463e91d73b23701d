"""pytest plugin: options, markers, fixtures and report hooks for the compatibility harness."""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("cslr", "CSLR compatibility harness")
    group.addoption("--data-dir", default=None, help="corpus directory to check (default: the embedded demo corpus)")
    group.addoption("--config", default=None, help="training configuration file (the one train.py --config reads)")
    group.addoption("--gpu", action="store_true", default=False, help="run on CUDA; fails at once if CUDA is absent")
    group.addoption("--diag-json", default=None, help="write every finding as JSON to this path")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="needs --gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

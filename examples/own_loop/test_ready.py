"""The project's own test: the harness's checks pass on the configuration the loop trains.

    python -m pytest test_ready.py -q
"""
from pathlib import Path

from harness import check


def test_ready():
    check(config=Path(__file__).with_name("harness.toml")).raise_for_failures()

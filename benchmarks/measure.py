"""The benchmark's measuring machinery: every figure is a ratio of two things measured side by
side, A and B alternating for `rounds` rounds, best of each side kept; its goal, if it has one."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

# (comparison, threshold) per row key; rows without an entry are informative only
GOALS = {
    "extract_vs_bare": (">=", 0.9),
    "workers2_vs_workers1": (">=", 1.4),
    "loader_w0_vs_step": (">=", 3.0),
    "loader_w2_vs_step": (">=", 3.0),
    "trainer_vs_bare": (">=", 0.95),
    "gate_cached_seconds": ("<=", 2.0),
    "harness_check_vs_compat": ("<=", 1.0),
    "scan_peak_10n_vs_n": ("<=", 1.1),
    "train_stats_peak_10n_vs_n": ("<=", 1.1),
    "iterate_peak_10n_vs_n": ("<=", 1.1),
    "raw32_vs_full32_bytes": ("<=", 0.26),
    "raw16_vs_full32_bytes": ("<=", 0.13),
    "recognize_rtf": (">=", 1.0),
    "export_parity_max_abs": ("<=", 1e-4),
    "guard_overhead": ("<=", 1.03),
    "guard_watch_overhead": ("<=", 1.03),
}


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


@dataclass
class Row:
    """One line of the table: value = a / b (or an absolute figure where b is None)."""

    section: str
    key: str
    label: str
    value: float
    a: str = ""  # the measured side, formatted with its unit
    b: str = ""  # what it is compared against
    note: str = ""
    goal: str = ""
    met: bool | None = None

    def __post_init__(self):
        if self.key in GOALS and not self.goal:
            op, limit = GOALS[self.key]
            self.goal = f"{op} {limit:g}"
            if math.isfinite(self.value):
                self.met = self.value >= limit if op == ">=" else self.value <= limit


@dataclass
class SectionResult:
    name: str
    rows: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # everything measured, JSON-ready
    load: tuple = ()  # 1-minute load average at start and end
    seconds: float = 0.0
    skipped: str = ""  # reason, when the section could not run


def best_of_alternating(candidates: dict, rounds: int, better=max) -> dict:
    """Run every callable of `candidates` once a round, in turn (A B A B ...; the order flips each
    round so neither side always runs first), and keep each one's best figure.

    candidates: name -> zero-argument callable returning a number. better: max for rates, min for
    times or memory. Returns name -> {"best": number, "all": [numbers in run order]}.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(candidates)
    seen = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seen[name].append(candidates[name]())
    return {n: {"best": better(v), "all": v} for n, v in seen.items()}

"""The structured result every harness check returns."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass
class Finding:
    check: str  # e.g. "clean_features", "forward[per_sample]"
    status: str  # pass / warn / fail
    summary: str  # one line: what was found (the cause, when it failed)
    hint: str = ""  # one line: what to do
    values: dict = field(default_factory=dict, repr=False)  # measured figures, JSON-serialisable
    samples: list = field(default_factory=list)  # offending sample ids
    modality: str = ""  # offending modality, if one
    features: list = field(default_factory=list)  # offending feature names (data.layout.describe_column)
    tables: dict = field(default_factory=dict, repr=False)  # title -> {"columns": [...], "rows": [[...], ...]}
    plots: dict = field(default_factory=dict, repr=False)  # title -> PNG bytes (report only, not JSON)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def message(self) -> str:
        parts = [f"[{self.status.upper()}] {self.check}: {self.summary}"]
        if self.samples:
            shown = ", ".join(map(str, self.samples[:10]))
            parts.append(f"  samples: {shown}{' ...' if len(self.samples) > 10 else ''} ({len(self.samples)})")
        if self.modality:
            parts.append(f"  modality: {self.modality}")
        if self.features:
            shown = ", ".join(map(str, self.features[:8]))
            parts.append(f"  features: {shown}{' ...' if len(self.features) > 8 else ''} ({len(self.features)})")
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("plots")
        d["plots"] = sorted(self.plots)
        return json.loads(json.dumps(d, default=_jsonable))


def _jsonable(x):
    try:
        return x.item()
    except AttributeError:
        return str(x)


def worst(statuses) -> str:
    statuses = list(statuses)
    return max(statuses, key=_RANK.__getitem__) if statuses else PASS


def status_from(fail: bool, warn: bool = False) -> str:
    return FAIL if fail else WARN if warn else PASS

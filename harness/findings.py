"""The structured result every harness check returns."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

PASS, WARN, FAIL = "pass", "warn", "fail"
SKIP = "skip"  # the check does not apply to this setup; `summary` says why
_RANK = {SKIP: 0, PASS: 0, WARN: 1, FAIL: 2}


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
    plots: dict = field(default_factory=dict, repr=False)  # title -> harness.plots.Plot or PNG bytes (report only, not JSON)
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

    @classmethod
    def from_json(cls, d: dict) -> "Finding":
        """The inverse of to_json (plots come back as names only)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "plots"}
        return cls(**known, plots={name: b"" for name in d.get("plots", [])})

    def to_json(self) -> dict:
        d = asdict(replace(self, plots={}))  # plots are drawn only for a report
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


def table(columns, rows) -> dict:
    """A finding's table (Finding.tables values): {"columns": [...], "rows": [[...], ...]}."""
    return {"columns": list(columns), "rows": [list(r) for r in rows]}


def format_findings(findings) -> str:
    """The closing table (check, status, key figure), then each failed check with its cause, its
    samples, features and hint, then each warning, then the reasons of skipped checks. Findings as Finding or JSON dicts."""
    rows = [f.to_json() if isinstance(f, Finding) else f for f in findings]
    if not rows:
        return ""
    width = max(len(f["check"]) for f in rows)
    lines = [f"{'check':<{width}}  status  key figure"]
    lines += [f"{f['check']:<{width}}  {f['status']:<6}  {f['values'].get('key', '') if f['status'] != SKIP else '-'}" for f in rows]
    for f in rows:
        if f["status"] != FAIL:
            continue
        lines.append(f"FAIL {f['check']}: {f['summary']}")
        if f.get("samples"):
            lines.append(f"     samples: {', '.join(map(str, f['samples'][:10]))}{' ...' if len(f['samples']) > 10 else ''} ({len(f['samples'])})")
        if f.get("features"):
            lines.append(f"     features: {', '.join(map(str, f['features'][:8]))}{' ...' if len(f['features']) > 8 else ''} ({len(f['features'])})")
        if f.get("hint"):
            lines.append(f"     hint: {f['hint']}")
    for status in (WARN, SKIP):
        lines += [f"{status} {f['check']}: {f['summary']}" for f in rows if f["status"] == status]
    return "\n".join(lines)

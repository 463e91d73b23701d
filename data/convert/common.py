"""What every importer shares: its errors, the import report, corpus.json, the label-table reader, block offsets."""
from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from data.corpus import CORPUS_INFO, atomic_write_text
from data.layout import COORDS, LAYOUT, RAW_DIM

N_LANDMARKS = RAW_DIM // COORDS  # 543

# First landmark (not column) of each block in the project layout, and its landmark count.
BLOCK_START = {name: block.start // COORDS for name, block, _ in LAYOUT.landmark_blocks}
BLOCK_COUNT = {name: count for name, _, count in LAYOUT.landmark_blocks}


class ConvertError(ValueError):
    """Input that cannot be imported as it is; the message names the file/line and the fix."""


class IncompleteImportWarning(UserWarning):
    """Some input was not imported; the message lists what and why (also in corpus.json)."""


@dataclass
class ConvertReport:
    """What an import did. `failed` maps a sample id (or file) to the reason; `missing` lists
    labelled samples whose source (frame folder, .pose file) is absent."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the corpus (extraction resumed)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    missing_reason: dict[str, str] = field(default_factory=dict)  # id -> where the source was expected

    def add_missing(self, sample_id: str, reason: str) -> None:
        self.missing.append(sample_id)
        self.missing_reason[sample_id] = reason

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing

    def summary(self, show: int = 20) -> str:
        lines = [f"converted {len(self.converted)}, skipped {len(self.skipped)} (already present), "
                 f"failed {len(self.failed)}, missing source {len(self.missing)}"]
        for key, reason in list(self.failed.items())[:show]:
            lines.append(f"  FAILED {key}: {reason}")
        if len(self.failed) > show:
            lines.append(f"  ... and {len(self.failed) - show} more failures (all listed in {CORPUS_INFO})")
        for name in self.missing[:show]:
            reason = self.missing_reason.get(name)
            lines.append(f"  MISSING {name}: {reason}" if reason else f"  MISSING {name}")
        if len(self.missing) > show:
            lines.append(f"  ... and {len(self.missing) - show} more missing (all listed in {CORPUS_INFO})")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"converted": len(self.converted), "skipped": len(self.skipped),
                "failed": dict(self.failed), "missing": list(self.missing)}


def finish_import(out_dir: Path, report: ConvertReport, info: dict) -> Path:
    """Write corpus.json (dataset name + import summary) and warn when something was not imported."""
    atomic_write_text(out_dir / CORPUS_INFO, json.dumps({**info, "import": report.as_dict()}, indent=2) + "\n")
    if not report.ok:
        warnings.warn(f"{out_dir}: import incomplete:\n{report.summary()}", IncompleteImportWarning, stacklevel=3)
    return out_dir


def read_csv(path: Path, required, delimiter: str = ",") -> list[dict]:
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "|" else csv.QUOTE_MINIMAL)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ConvertError(f"{path}: missing column(s) {missing} (header {header}); it needs {list(required)}, separated by {delimiter!r}")
        return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]

"""Bad input is either a clear error or a counted quarantine — never a silent drop.

`DataFormatError` stops a job on input it cannot interpret at all (a missing column, an unreadable file);
`Quarantine` collects row-level problems so a night's run finishes and reports exactly what it set aside.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

MAX_EXAMPLES_PER_REASON = 20


class DataFormatError(ValueError):
    """Input that cannot be interpreted; the message names file, line and field when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ", ".join(
            part for part in (
                f"file {file}" if file else "",
                f"line {line}" if line is not None else "",
                f"field '{field}'" if field else "",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


@dataclasses.dataclass(frozen=True)
class QuarantinedRow:
    file: str
    line: int | None  # 1-based line (or row) number in the source file; None for whole-object problems
    field: str | None
    reason: str       # a short stable key, e.g. "unknown_item", "bad_timestamp", "duplicate_event"
    value: str | None = None  # the offending value, truncated


class Quarantine:
    """Counts set-aside rows by reason (and by file and reason, so each file's rows read can be checked
    against rows kept + rows set aside) and keeps the first few of each reason as examples for the report."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.by_file: dict[str, Counter[str]] = {}
        self.examples: dict[str, list[QuarantinedRow]] = {}

    def add(self, file: str, line: int | None, field: str | None, reason: str, value: Any = None) -> None:
        self.counts[reason] += 1
        self.by_file.setdefault(file, Counter())[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES_PER_REASON:
            text = None if value is None else str(value)[:200]
            bucket.append(QuarantinedRow(file, line, field, reason, text))

    def add_many(self, reason: str, count: int, example: QuarantinedRow | None = None, *,
                 file: str | None = None) -> None:
        """Record `count` rows set aside by a vectorised check (e.g. duplicate events); they came from
        `file` (default: the example's file)."""
        if count <= 0:
            return
        self.counts[reason] += count
        source = file if file is not None else (example.file if example is not None else "")
        self.by_file.setdefault(source, Counter())[reason] += count
        if example is not None:
            bucket = self.examples.setdefault(reason, [])
            if len(bucket) < MAX_EXAMPLES_PER_REASON:
                bucket.append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": dict(sorted(self.counts.items())),
            "by_file": {file: dict(sorted(counts.items())) for file, counts in sorted(self.by_file.items())},
            "examples": {
                reason: [dataclasses.asdict(row) for row in rows]
                for reason, rows in sorted(self.examples.items())
            },
        }

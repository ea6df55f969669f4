"""Errors that name what went wrong and where: file, row, column and rule."""

from __future__ import annotations

from dataclasses import dataclass, field


class AirsightError(Exception):
    """Base class; the CLI maps each subclass to its own exit code."""

    exit_code = 1


class SettingsError(AirsightError):
    """A dataset group settings file is missing, malformed or inconsistent."""

    exit_code = 2


@dataclass
class Violation:
    """One broken rule, with enough context to find the offending data."""

    rule: str
    message: str
    file: str | None = None
    column: str | None = None
    rows: list[int] = field(default_factory=list)  # 1-based line numbers in the file
    count: int = 0
    samples: list = field(default_factory=list)

    def __str__(self) -> str:
        where = [f"file {self.file}"] if self.file else []
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" (+{self.count - len(self.rows[:5])} more)" if self.count > 5 else ""
            where.append(f"line {shown}{more}")
        if self.column:
            where.append(f"column {self.column!r}")
        text = f"[{self.rule}] {', '.join(where)}: {self.message}"
        if self.samples:
            text += f"; sample bad values: {self.samples[:5]!r}"
        return text

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "message": self.message,
            "file": self.file,
            "column": self.column,
            "rows": self.rows[:20],
            "count": self.count,
            "samples": [str(s) for s in self.samples[:5]],
        }


class DataError(AirsightError):
    """The input data breaks one or more rules; nothing was written."""

    exit_code = 3

    def __init__(self, dataset: str, violations: list[Violation], report: str | None = None):
        self.dataset = dataset
        self.violations = violations
        self.report = report
        lines = [f"dataset {dataset}: {len(violations)} rule(s) broken"]
        lines += [f"  - {v}" for v in violations]
        if report:
            lines.append(f"  report: {report}")
        super().__init__("\n".join(lines))

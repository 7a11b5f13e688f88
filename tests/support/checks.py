"""boltfix's check of a file, and its findings as a test compares them."""

from __future__ import annotations

from boltfix.check import CheckResult, check
from boltfix.reader import DB


def run_check(path) -> CheckResult:
    """boltfix's check of ``path``."""
    with DB(path) as db:
        return check(db)


def pairs(result: CheckResult):
    """(code, page) of every finding kept."""
    return {(f.code, f.page) for f in result.findings}


def fmt(result: CheckResult) -> str:
    """The first findings, one per line, for an assertion's message."""
    return "\n".join(f"  {f.code} page={f.page} {f.message}" for f in result.findings[:30])

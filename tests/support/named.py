"""Which keys etcd serves wrongly a repair report names: by key (at risk,
lost) or by revision (the key's mod_revision of before the crash inside a
range of revisions the report says are lost).  One count for the crash
tests and ``scripts/measure_datadir_repair.py``."""

from __future__ import annotations

from typing import Iterable, List, Optional, Set, Tuple


def lost_ranges(lost: Optional[dict]) -> List[Tuple[int, Optional[int]]]:
    """``(first, last)`` revision ranges (last None: no end) of a report's
    ``{"ranges": [[lo, hi], ...], "open_above": N}``."""
    lost = lost or {}
    ranges = [(lo, hi) for lo, hi in lost.get("ranges") or []]
    if lost.get("open_above") is not None:
        ranges.append((lost["open_above"] + 1, None))
    return ranges


def in_ranges(rev: int, ranges: Iterable[Tuple[int, Optional[int]]]) -> bool:
    """Whether revision ``rev`` lies inside one of ``ranges``."""
    return any(lo <= rev and (hi is None or rev <= hi) for lo, hi in ranges)


def wrong_named(wrong: Set[str], before: dict, keys: Set[str],
                lost: Optional[dict]) -> Tuple[Set[str], Set[str]]:
    """(the keys of ``wrong`` named by key in ``keys``, the others named by
    revision range): ``before`` maps each key served before the crash to
    (value, mod_revision, ...); a key whose every revision was lost is not
    in the db to be named by key, its mod_revision in a lost range names it."""
    ranges = lost_ranges(lost)
    by_key = wrong & keys
    by_range = {k for k in wrong - by_key if k in before and in_ranges(before[k][1], ranges)}
    return by_key, by_range


def range_scope(before: dict, lost: Optional[dict]) -> Set[str]:
    """The keys served before the crash whose mod_revision a lost range
    names (the range's reach over the keyspace, wrong or not)."""
    ranges = lost_ranges(lost)
    return {k for k, v in before.items() if in_ranges(v[1], ranges)}

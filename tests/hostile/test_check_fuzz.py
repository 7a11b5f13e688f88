"""Fuzz ``check()`` with mutated real bbolt files.

Hypothesis mutates the bytes of the committed fixtures (bit flips, page
header and element fields, zeroed and copied pages, truncation, meta fields
with a recomputed checksum) and asserts that opening raises nothing but
:class:`boltfix.errors.BoltError` and that ``check()`` always returns a
:class:`CheckResult` in bounded time.  Runs derandomized, so CI is
reproducible; the whole file takes well under a minute.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix.check import CheckResult, check
from boltfix.errors import BoltError
from boltfix.findings import Finding
from boltfix.reader import DB
from support.fuzz import SHAPES, mutated, original

TIME_LIMIT = 5.0  # seconds per example

# BOLTFIX_FUZZ_EXAMPLES=5000 BOLTFIX_FUZZ_RANDOM=1 explores beyond the fixed CI seed.
FUZZ = settings(
    max_examples=int(os.environ.get("BOLTFIX_FUZZ_EXAMPLES", "250")),
    derandomize=not os.environ.get("BOLTFIX_FUZZ_RANDOM"),
    deadline=None,  # timed explicitly below, with a clear message
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- mutations


# ---------------------------------------------------------------- the checks
class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"open + check did not finish in {TIME_LIMIT}s")


def check_bytes(data: bytes):
    """Write ``data`` to a temp file, open and check it; the CheckResult or None
    when the open was refused with a BoltError.  A run past TIME_LIMIT is
    interrupted (SIGALRM) and fails the example."""
    fd, path = tempfile.mkstemp(suffix=".db", prefix="boltfix-fuzz-")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        start = time.monotonic()
        try:
            db = DB(path)
        except BoltError:
            return None
        try:
            result = check(db)
            # the reader's own API answers or raises BoltError, never worse
            try:
                for page in db.pages():
                    page.elements()
                db.freelist()
            except BoltError:
                pass
        finally:
            db.close()
        elapsed = time.monotonic() - start
        assert elapsed < TIME_LIMIT, f"check took {elapsed:.1f}s"
        return result
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.unlink(path)


def _valid_result(result: CheckResult) -> None:
    assert isinstance(result, CheckResult)
    assert result.total == sum(result.counts.values())
    assert len(result.findings) <= result.total
    for f in result.findings:
        assert isinstance(f, Finding) and f.code and f.message
        f.to_json()
    result.to_json()


@FUZZ
@given(mutated())
def test_check_never_raises_or_hangs(case):
    shape, muts, data = case
    result = check_bytes(data)
    if result is not None:
        _valid_result(result)


@FUZZ
@given(st.sampled_from(SHAPES), st.integers(0, 2**32 - 1))
def test_truncation_anywhere(shape, where):
    data, ps, hwm = original(shape)
    cut = where % len(data)
    result = check_bytes(data[: max(1, cut)])
    if result is not None:
        _valid_result(result)
        if cut < hwm * ps and cut >= 2 * ps:
            assert not result.clean


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(st.binary(min_size=1, max_size=20000))
def test_random_files_open_or_refuse(data):
    result = check_bytes(data)
    if result is not None:
        _valid_result(result)

"""boltfix's check of a file, and its findings as a test compares them."""

from __future__ import annotations

import re

from boltfix.check import CheckResult, check
from boltfix.findings import BBOLT_EQUIVALENT
from boltfix.reader import DB
from support import damage


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


_MESSAGE = re.compile(r"^page (\d+): (.*)$")

# bbolt's wording is coarser than boltfix's codes: a freelist id that is also
# a meta page, past the HWM or the freelist itself is reported by boltfix as
# that, where bbolt (which does not look) may only notice the duplicate.
_MORE_SPECIFIC = {
    "already-freed": {"freelist-reserved-page", "freelist-out-of-bounds", "freelist-self"},
    # a page whose type alone is wrong, read as the child its parent names
    "invalid-page-type": {"page-type-recovered"},
    # a pointer to a meta page: bbolt counts pages 0 and 1 reached before
    # it walks, so it says "multiple references"; boltfix names the type
    "multiple-references": {"invalid-page-type"},
}


def explain(message: str, result: CheckResult, path) -> bool:
    """Does a boltfix finding account for this bbolt tx.Check message?

    1. the equivalent code (``BBOLT_EQUIVALENT``) on the page the message names;
    2. a freelist whose count runs past its page: bbolt reads ids from the
       pages after it as ids and reports them "already freed" or
       "reachable freed"; boltfix reports the
       count (freelist-count-overflow) and reads no further;
    3. bbolt names pages by the id in their header, boltfix by position: a
       boltfix finding on a page whose header id is N accounts for bbolt's
       messages about N, and for bbolt's "unreachable unfreed" about the page
       itself (bbolt marked the header id reachable instead).
    """
    m = _MESSAGE.match(message)
    assert m, f"unparsed bbolt message {message!r}"
    page, wording = int(m.group(1)), m.group(2)
    codes = [c for w, c in BBOLT_EQUIVALENT.items() if w in wording]
    assert codes, f"no BBOLT_EQUIVALENT for {message!r}"
    accepted = set(codes)
    for c in codes:
        accepted |= _MORE_SPECIFIC.get(c, set())
    if any(f.code in accepted and f.page == page for f in result.findings):
        return True
    if ({"already-freed", "reachable-freed"} & set(codes)
            and "freelist-count-overflow" in result.counts):
        return True
    # 4. a page whose overflow run is longer than its elements need: bbolt
    #    claims the whole run and then meets the next page's real pointer
    #    ("multiple references"); boltfix claims only what is needed and
    #    reports the overlong run on the page that claims it.
    if "multiple-references" in codes and any(
            f.code == "page-overflow-too-large"
            and f.page < page <= f.page + f.detail["overflow"] for f in result.findings):
        return True
    with DB(path) as db:
        for f in result.findings:
            if f.code not in ("page-id-mismatch", "invalid-page-type") or f.page is None:
                continue
            if f.page < 2 or f.page >= db.pages_in_file:
                continue
            header_id = db.page(f.page).self_id
            if header_id != f.page and (header_id == page or f.page == page):
                return True
    return False


#: where bbolt 1.4/1.5's ``tx.Check`` messages that do not start with
#: ``page N:`` name a page: key order (``leaf page(14)``), a page type
#: (``pgId:0``), and the panics 1.5 recovers into messages (``Page expected
#: to be: 62``, ``invalid freelist page: 16``)
_NEWER_PAGE = re.compile(r"(?:page\((\d+)\)|pgId:(\d+)|Page expected to be: (\d+)"
                         r"|invalid freelist page: (\d+))")
#: a key-order message quotes the element it compared against
_PREVIOUS = re.compile(r"previous element \(hex\)([0-9a-f]*)")


def _quotes_flagged_key(message: str, result: CheckResult, path) -> bool:
    """Does a key-order message compare against a key boltfix flagged?

    bbolt 1.4+ carries the last key it saw into the next page: one key out
    of its ancestors' range on leaf 14 is also reported on the leaf after
    it ("key[2] ... on branch page(15) ... previous element (hex)<that key>")."""
    m = _PREVIOUS.search(message)
    if not m:
        return False
    quoted = bytes.fromhex(m.group(1))
    for f in result.findings:
        if f.page is None or "index" not in f.detail:
            continue
        off, ksize = damage.key_offset(path, f.page, f.detail["index"])
        with open(path, "rb") as fh:
            fh.seek(off)
            if fh.read(ksize) == quoted:
                return True
    return False


def explain_any(message: str, result: CheckResult, path) -> bool:
    """:func:`explain` for every bbolt version's wording: a ``page N:``
    message as there; a newer message that names a page needs a boltfix
    finding on that page (or, for a page past the file or the high-water
    mark, a finding that names the meta or the pointer to it); a message
    that names no page (a recovered runtime error) needs boltfix not clean."""
    if _MESSAGE.match(message):
        return explain(message, result, path)
    m = _NEWER_PAGE.search(message)
    if not m:
        return not result.clean
    page = int(next(g for g in m.groups() if g is not None))
    if _quotes_flagged_key(message, result, path):
        return True
    if "invalid-page-type" in result.counts:
        # bbolt read a page that is not a branch or leaf as one (a meta
        # page, 1.5 goes on where 1.3.6 died) and follows garbage as child
        # ids: a page past the high-water mark is its follow-on
        with DB(path) as db:
            if page >= db.meta.pgid:
                return True
    return any(f.page == page or page in f.pages or page in f.detail.values()
               for f in result.findings)

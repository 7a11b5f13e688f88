"""`boltfix page` on a 200 MB value (issue 14): the table, `--json` and
`--hex` of its pages in bounded memory, read in a child process (VmHWM)."""

from __future__ import annotations

import json

import pytest

from support.measure import assert_sane, rss_parts, run_child

# ---------------------------------------------------------------- 200 MB
# big_value_db (a 200 MB value among small records; its leaf is page 17,
# overflow 51200) and mode (C core or pure Python) are in conftest.py


@pytest.mark.parametrize("extra", [[], ["--json"], ["--show-secrets"]])
def test_page_of_a_200_mb_value_is_bounded(big_value_db, mode, extra):
    """page built the value's text whole: 1.26 GB (table), 2.1 GB (--json)."""
    code, out, err, rss, _ = run_child("page", big_value_db, 17, *extra)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    text = out.decode()
    assert ("209,715,200 bytes" in text if "--json" not in extra
            else json.loads(text)[0]["elements"][0]["value_bytes"] == 200 << 20)


@pytest.mark.parametrize("pgid", [17, 18])
def test_page_hex_of_a_200_mb_value_is_bounded(big_value_db, mode, pgid):
    """page --hex took 61 s and 3.4 GB (the run copied twice, one 800 MB
    string); now streamed.  Page 18 is an overflow page: its "header" is
    the value's bytes and claims a run to the end of the file."""
    code, out, err, rss, _ = run_child("page", "--hex", big_value_db, pgid, lines_only=True)
    assert_sane(code, err, rss, ok=(0,))
    assert rss < 150, f"peak RSS {rss:.0f} MB"
    lines, size = out
    if pgid == 17:  # a line per 16 bytes of the 51,201 pages (zeros folded)
        assert lines > (200 << 20) // 16 and size > 70 * lines


def test_page_json_of_overflow_pages_is_bounded(big_value_db, mode):
    code, err, rss, _ = rss_parts("page", "--json", big_value_db, 18, 1000, 51217)
    assert code == 0 and b"Traceback" not in err, err[-500:]
    assert rss < 150, f"peak RSS {rss:.0f} MB"

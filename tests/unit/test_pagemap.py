"""boltfix.pagemap: the page map's states agree with check and pages."""

from __future__ import annotations

from boltfix import walk
from boltfix.check import check
from boltfix.reader import DB
from support import damage


# ---------------------------------------------------------------- the page map
def test_page_map_states_agree_with_check_and_pages(tmp_path):
    from boltfix import pagemap as P
    from boltfix.describe import page_rows

    path = damage.copy_fixture("freed", tmp_path)
    with DB(path) as db:
        w = walk.Walker(db)
        w.count_all()
        pm = P.PageMap(db, w)
        stats = check(db).stats
        rows = {r["id"]: r["state"] for r in page_rows(db)}
        n = db.pages_in_file
    assert pm.synced and pm.readable and pm.listed == stats["free_pages"] > 0
    states = [pm.state(i) for i in range(n)]
    assert states[0] == states[1] == P.META
    assert states.count(P.FREELIST) == 1
    by_state = {"reachable": {P.REACHED, P.META, P.FREELIST}, "free": {P.UNREACHED},
                "beyond-hwm": {P.BEYOND_HWM}}
    for pgid, state in rows.items():
        assert states[pgid] in by_state[state], (pgid, state, states[pgid])
        assert (state == "free") == pm.is_listed(pgid)
    assert pm.state(n + 3) == P.PAST_EOF and "file" in pm.reason(n + 3)
    # salvage adds states of its own: a new number with its reason
    free_page = next(i for i in range(n) if pm.is_listed(i))
    if 40 not in P.REASONS:
        P.add_state(40, "a test's own state")
    pm.mark(free_page, 40)
    assert pm.state(free_page) == 40 and pm.is_listed(free_page)
    assert pm.reason(free_page).startswith("a test's own state")

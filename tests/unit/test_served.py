"""boltfix.served: the parts of the analysis that read no real etcd (the
whole analysis against the real etcd: tests/oracle/test_etcd_served.py)."""

from __future__ import annotations

import shutil

from boltfix import findings as F
from boltfix import served
from boltfix.etcdkeys import KEY_BUCKET
from boltfix.findings import Finding
from boltfix.reader import DB
from support import REPO
from support.protobuf import key_value, rev_key


def _loss(code, bucket=KEY_BUCKET, rng=None):
    return Finding(code, "m", bucket=bucket, detail={"key_range": rng} if rng else {})


def test_key_bucket_losses_places_what_it_can():
    lo, hi = rev_key(5), rev_key(9)
    losses = served.key_bucket_losses([_loss(F.PAGE_CYCLE, rng=[lo.hex(), hi.hex()])], False)
    assert losses.any and not losses.unbounded and losses.ranges == [(lo, hi)]
    # no range: anywhere, the tail is open
    losses = served.key_bucket_losses([_loss(F.KEY_EMPTY)], False)
    assert losses.unbounded and losses.ranges == [(None, None)]
    # an open upper bound opens the tail too
    assert served.key_bucket_losses([_loss(F.PAGE_CYCLE, rng=[lo.hex(), "-"])], False).unbounded
    # other buckets lose nothing of `key`; a finding that loses nothing is no loss
    assert not served.key_bucket_losses([_loss(F.PAGE_CYCLE, bucket=(b"lease",))], False).any
    assert not served.key_bucket_losses([_loss(F.PAGE_ID_MISMATCH)], False).any
    # findings left out by --max-findings: cannot be placed
    assert served.key_bucket_losses([], True).unbounded


def test_an_unloadable_record_is_a_gap_of_its_own_revision():
    k = rev_key(7, 1)
    f = Finding(F.ETCD_UNLOADABLE_RECORD, "m", bucket=KEY_BUCKET, detail={"key": k.hex()})
    assert served.key_bucket_losses([f], False).ranges == [(k, k)]


def test_merge():
    assert served._merge([(5, 6), (1, 2), (3, 3), (9, 9)]) == [(1, 3), (5, 6), (9, 9)]
    assert served._merge([(5, 6), (1, 4), (2, 3)]) == [(1, 6)]  # adjacent ranges join


def test_drop_filter_leaves_out_every_revision_of_the_keys_at_risk():
    st = served.EtcdState(analysed=True)
    st.drop_keys = {b"/a"}
    keep = served.drop_filter(st)
    keys = [rev_key(1), rev_key(2), rev_key(3, tombstone=True)]
    values = [key_value(b"/a"), key_value(b"/b"), key_value(b"/a", value=b"")]
    assert keep(keys, values) == ([rev_key(2)], [key_value(b"/b")])


def test_an_intact_etcd_file_runs_nothing(tmp_path):
    path = tmp_path / "etcd.db"
    shutil.copyfile(REPO / "fixtures" / "etcd" / "etcd-3.5.db", path)
    with DB(path) as db:
        assert served.is_etcd(db)
        st = served.for_repair(db, None, _Collected(), {"index": db.meta.index})
    assert st is not None and not st.analysed and st.to_json()["at_risk"] == []


class _Collected:
    findings: list = []
    truncated = 0

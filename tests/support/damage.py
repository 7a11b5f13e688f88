"""A library of crafted damage for bbolt files, shared by the check and repair tests.

Every damage function takes the path of a *copy* of a real fixture (see
:func:`copy_fixture`; never a committed file), finds its target by reading
the file with boltfix's own reader ("the first branch page of bucket X",
"the leaf holding key K"), writes the damage with the construct declarations
of :mod:`boltfix.structs` (``page``, ``meta``, ``branchPageElement``,
``leafPageElement``, ``bucket``, ``freelist_escape``) and returns a
:class:`Damage` saying what it touched and what ``boltfix check`` must report.

    path = copy_fixture("nested", tmp_path)
    d = branch_to_self(path)            # or KINDS["branch-to-self"].apply(path)
    d.pages   -> (24,)                  # page ids written
    d.expect  -> (("page-cycle", 24),)  # (code, page) pairs check() must report

``KINDS`` maps a stable kind name to ``(fixture shape, function)`` so tests
can parametrize over every kind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from boltfix import structs as S
from boltfix.leaves import Bucket
from boltfix.reader import DB
from boltfix.walk import Walker

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "bbolt"


# ---------------------------------------------------------------- result
@dataclass
class Damage:
    """What one damage function did, and what a checker must say about it."""

    kind: str
    #: page ids whose bytes were changed (meta pages are 0/1)
    pages: Tuple[int, ...]
    #: (code, page) pairs boltfix must report; page None means "any page"
    expect: Tuple[Tuple[str, Optional[int]], ...]
    description: str = ""
    #: False when boltfix rightly rejects a meta bbolt 1.3.6 still uses, so
    #: the two check different trees and their findings cannot be paired.
    same_meta: bool = True
    extra: Dict = field(default_factory=dict)


# ---------------------------------------------------------------- files
def copy_fixture(shape: str, dest_dir, name: Optional[str] = None) -> Path:
    """Copy fixtures/bbolt/<shape>.db (or any path) into ``dest_dir``, writable."""
    src = Path(shape) if os.sep in str(shape) else FIXTURES / f"{shape}.db"
    dst = Path(dest_dir) / (name or src.name)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return dst


def _read(path, off: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def _write(path, off: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def _geometry(path) -> Tuple[int, int, int]:
    """(page size, pgid of the meta in use, index of the meta in use)."""
    with DB(path) as db:
        return db.page_size, db.meta.pgid, db.meta.index


def page_size_of(path) -> int:
    return _geometry(path)[0]


# ---------------------------------------------------------------- structs
def read_header(path, pgid: int, page_size: Optional[int] = None):
    ps = page_size or page_size_of(path)
    return S.page.parse(_read(path, pgid * ps, S.PAGE_HEADER_SIZE))


def write_header(path, pgid: int, page_size: Optional[int] = None, **changes) -> None:
    """Change fields of a page header (id, flags, count, overflow)."""
    ps = page_size or page_size_of(path)
    hdr = read_header(path, pgid, ps)
    hdr.update(changes)
    _write(path, pgid * ps, S.page.build(hdr))


def read_meta(path, index: int, page_size: Optional[int] = None):
    ps = page_size or page_size_of(path)
    return S.meta.parse(_read(path, index * ps + S.PAGE_HEADER_SIZE, S.META_SIZE))


def write_meta(path, index: int, *, fix_checksum: bool = True,
               page_size: Optional[int] = None, **changes) -> None:
    """Change meta fields (magic, version, pageSize, root, freelist, pgid, txid,
    checksum); ``root`` sets the root bucket's page.  The checksum is
    recomputed unless ``fix_checksum`` is False or ``checksum`` is given."""
    ps = page_size or page_size_of(path)
    m = read_meta(path, index, ps)
    if "root" in changes:
        m.root.root = changes.pop("root")
    m.update(changes)
    raw = S.meta.build(m)
    if fix_checksum and "checksum" not in changes:
        m.checksum = S.fnv64a(raw[:S.META_CHECKSUM_SPAN])
        raw = S.meta.build(m)
    _write(path, index * ps + S.PAGE_HEADER_SIZE, raw)


def _element_offset(pgid: int, idx: int, ps: int) -> int:
    return pgid * ps + S.PAGE_HEADER_SIZE + idx * S.BRANCH_ELEMENT_SIZE


def read_branch_element(path, pgid: int, idx: int, page_size: Optional[int] = None):
    ps = page_size or page_size_of(path)
    return S.branchPageElement.parse(_read(path, _element_offset(pgid, idx, ps),
                                           S.BRANCH_ELEMENT_SIZE))


def write_branch_element(path, page_id: int, idx: int, page_size: Optional[int] = None,
                         **changes) -> None:
    """Change fields of a branch element (pos, ksize, pgid: the child)."""
    ps = page_size or page_size_of(path)
    el = read_branch_element(path, page_id, idx, ps)
    el.update(changes)
    _write(path, _element_offset(page_id, idx, ps), S.branchPageElement.build(el))


def read_leaf_element(path, pgid: int, idx: int, page_size: Optional[int] = None):
    ps = page_size or page_size_of(path)
    return S.leafPageElement.parse(_read(path, _element_offset(pgid, idx, ps),
                                         S.LEAF_ELEMENT_SIZE))


def write_leaf_element(path, pgid: int, idx: int, page_size: Optional[int] = None,
                       **changes) -> None:
    ps = page_size or page_size_of(path)
    el = read_leaf_element(path, pgid, idx, ps)
    el.update(changes)
    _write(path, _element_offset(pgid, idx, ps), S.leafPageElement.build(el))


def key_offset(path, pgid: int, idx: int, page_size: Optional[int] = None) -> Tuple[int, int]:
    """(absolute offset, ksize) of element ``idx``'s key (branch or leaf page)."""
    ps = page_size or page_size_of(path)
    hdr = read_header(path, pgid, ps)
    if hdr.flags == S.BRANCH_PAGE_FLAG:
        el = read_branch_element(path, pgid, idx, ps)
    else:
        el = read_leaf_element(path, pgid, idx, ps)
    return _element_offset(pgid, idx, ps) + el.pos, el.ksize


def write_freelist(path, ids: Sequence[int], *, count: Optional[int] = None,
                   escape: Optional[bool] = None) -> int:
    """Rewrite the in-use freelist page with ``ids`` (kept in the given order).

    ``count`` overrides the count written (the damage); ``escape`` forces the
    0xFFFF escape form.  Returns the freelist page id."""
    ps, _, _ = _geometry(path)
    with DB(path) as db:
        fl = db.meta.freelist
    hdr = read_header(path, fl, ps)
    n = len(ids) if count is None else count
    if escape is None:
        escape = n >= S.FREELIST_COUNT_ESCAPE
    body = b"".join(S.U64.pack(i) for i in ids)
    if escape:
        hdr.count = S.FREELIST_COUNT_ESCAPE
        body = S.freelist_escape.build({"count": n}) + body
    else:
        hdr.count = n
    data = S.page.build(hdr) + body
    assert len(data) <= (hdr.overflow + 1) * ps, "freelist does not fit its run"
    _write(path, fl * ps, data)
    return fl


def freelist_ids(path) -> Tuple[int, List[int]]:
    """(freelist page id, ids) of the in-use freelist."""
    with DB(path) as db:
        fl = db.freelist()
        assert fl is not None and not fl.findings, "needs a synced, healthy freelist"
        return fl.pgid, list(fl.ids(db))


# ---------------------------------------------------------------- finding targets
@dataclass
class Node:
    pgid: int
    flags: int
    depth: int
    parent: Optional[int]  # parent page id, None for the bucket root
    index: Optional[int]  # element index in the parent
    children: List[int] = field(default_factory=list)
    keys: List[bytes] = field(default_factory=list)


def find_bucket(db: DB, path: Sequence[bytes]) -> Bucket:
    """The bucket at ``path`` (a tuple of names), found with the safe walk."""
    path = tuple(path)
    w = Walker(db)
    if not path:
        return w.root_bucket()
    for parent, rec in w.walk():
        if rec.is_bucket and parent.path + (rec.key,) == path:
            b = w.open_bucket(parent, rec)
            assert b is not None
            return b
    raise KeyError(f"no bucket {path!r}")


def bucket_entry(db: DB, path: Sequence[bytes]) -> Tuple[int, int]:
    """(page id, element index) of the leaf element naming bucket ``path``."""
    path = tuple(path)
    w = Walker(db)
    for parent, rec in w.walk():
        if rec.is_bucket and parent.path + (rec.key,) == path:
            return rec.page, rec.index
    raise KeyError(f"no bucket {path!r}")


def tree(db: DB, root: int) -> List[Node]:
    """Every page of a (healthy) paged bucket, depth first, parents first."""
    out: List[Node] = []
    stack = [(root, 0, None, None)]
    while stack:
        pgid, depth, parent, index = stack.pop()
        p = db.page(pgid)
        els = p.elements()
        node = Node(pgid, p.flags, depth, parent, index,
                    [e.child for e in els if e.child is not None] if p.flags == S.BRANCH_PAGE_FLAG
                    else [], [e.key for e in els])
        out.append(node)
        for i in reversed(range(len(node.children))):
            stack.append((node.children[i], depth + 1, pgid, i))
    return out


def bucket_tree(path, bucket_path: Sequence[bytes]) -> List[Node]:
    with DB(path) as db:
        b = find_bucket(db, bucket_path)
        assert b.root, f"bucket {bucket_path!r} is inline"
        return tree(db, b.root)


def first_branch(path, bucket_path, depth: int = 0) -> Node:
    """The first branch page of the bucket at ``depth`` (0 = the root)."""
    for n in bucket_tree(path, bucket_path):
        if n.flags == S.BRANCH_PAGE_FLAG and n.depth == depth:
            return n
    raise LookupError(f"bucket {bucket_path!r} has no branch page at depth {depth}")


def leaves(path, bucket_path) -> List[Node]:
    return [n for n in bucket_tree(path, bucket_path) if n.flags == S.LEAF_PAGE_FLAG]


def leaf_holding(path, bucket_path, key: bytes) -> Tuple[Node, int]:
    """(leaf page, element index) holding ``key`` in the bucket."""
    for n in leaves(path, bucket_path):
        if key in n.keys:
            return n, n.keys.index(key)
    raise KeyError(key)


def subtree_pages(path, bucket_path, pgid: int) -> List[int]:
    """``pgid`` and every page below it (overflow runs included)."""
    with DB(path) as db:
        out = []
        for n in tree(db, pgid):
            ov = db.page(n.pgid).overflow
            out.extend(range(n.pgid, n.pgid + ov + 1))
        return out


# ---------------------------------------------------------------- meta damage
def _newest(path) -> int:
    return _geometry(path)[2]


def meta_bad_magic(path, index: Optional[int] = None) -> Damage:
    i = _newest(path) if index is None else index
    write_meta(path, i, magic=0xDEADBEEF)
    return Damage("meta-bad-magic", (i,), (("meta-bad-magic", i),), f"meta {i} magic 0xDEADBEEF")


def meta_bad_version(path, index: Optional[int] = None) -> Damage:
    i = _newest(path) if index is None else index
    write_meta(path, i, version=3)
    return Damage("meta-bad-version", (i,), (("meta-bad-version", i),), f"meta {i} version 3")


def meta_bad_checksum(path, index: Optional[int] = None) -> Damage:
    i = _newest(path) if index is None else index
    m = read_meta(path, i)
    write_meta(path, i, checksum=m.checksum ^ 0x5A5A)
    return Damage("meta-bad-checksum", (i,),
                  (("meta-bad-checksum", i), ("meta-not-newest", i)),
                  f"meta {i} checksum flipped (the newest meta, so bbolt uses the other)")


def meta_bad_page_size(path, index: int = 1) -> Damage:
    """A page size that is not a power of two, checksum recomputed.

    On meta 1 by default: bbolt 1.3.6 takes the page size from meta 0 only
    and does not validate it, so a bad size in meta 0 makes it read every
    page at the wrong stride."""
    write_meta(path, index, pageSize=1000)
    return Damage("meta-bad-page-size", (index,), (("meta-bad-page-size", index),),
                  f"meta {index} page size 1000 (checksum valid)",
                  same_meta=False)


def meta0_bad_page_size(path) -> Damage:
    d = meta_bad_page_size(path, 0)
    d.kind = "meta-0-bad-page-size"
    return d


def meta_root_out_of_range(path, index: Optional[int] = None) -> Damage:
    i = _newest(path) if index is None else index
    m = read_meta(path, i)
    write_meta(path, i, root=m.pgid + 1)
    return Damage("meta-root-out-of-range", (i,), (("meta-root-out-of-bounds", i),),
                  f"meta {i} root = pgid + 1 (checksum valid)", same_meta=False)


def meta_freelist_out_of_range(path, index: Optional[int] = None) -> Damage:
    i = _newest(path) if index is None else index
    m = read_meta(path, i)
    write_meta(path, i, freelist=m.pgid + 1)
    return Damage("meta-freelist-out-of-range", (i,), (("meta-freelist-out-of-bounds", i),),
                  f"meta {i} freelist = pgid + 1 (checksum valid)", same_meta=False)


def both_metas_invalid(path) -> Damage:
    write_meta(path, 0, magic=0)
    write_meta(path, 1, version=0)
    return Damage("both-metas-invalid", (0, 1),
                  (("meta-both-invalid", None), ("meta-bad-magic", 0), ("meta-bad-version", 1)),
                  "meta 0 magic 0, meta 1 version 0")


def newest_meta_torn(path) -> Damage:
    """The newest meta half written: fields changed after the checksum was taken."""
    i = _newest(path)
    m = read_meta(path, i)
    write_meta(path, i, fix_checksum=False, root=m.root.root + 7, pgid=m.pgid + 3)
    return Damage("newest-meta-torn", (i,), (("meta-bad-checksum", i), ("meta-not-newest", i)),
                  f"meta {i} root/pgid changed without its checksum; meta {1 - i} is used")


# ---------------------------------------------------------------- file / page damage
def file_truncated(path, bucket_path=(b"live",)) -> Damage:
    """etcd#13406: the file ends before pgid, cutting off pages that branch
    pages still point to.  The cut is at the highest child of the bucket's
    branch pages; the fixture should have no synced freelist (etcd's way), or
    one below the cut."""
    ps, hwm, _ = _geometry(path)
    with DB(path) as db:
        fl = db.meta.freelist
    nodes = bucket_tree(path, bucket_path)
    cut = max(c for n in nodes if n.flags == S.BRANCH_PAGE_FLAG for c in n.children)
    assert fl == S.PGID_NO_FREELIST or fl < cut, "the freelist would be cut off"
    with open(path, "r+b") as f:
        f.truncate(cut * ps)
    return Damage("file-truncated", (cut,), (("file-truncated", cut), ("page-past-eof", cut)),
                  f"file cut to {cut} pages (pgid {hwm})", extra={"cut": cut})


def page_self_id_mismatch(path, bucket_path=(b"nested", b"paged")) -> Damage:
    leaf = leaves(path, bucket_path)[1]
    write_header(path, leaf.pgid, id=0)
    return Damage("page-self-id-mismatch", (leaf.pgid,), (("page-id-mismatch", leaf.pgid),),
                  f"leaf {leaf.pgid} header id 0")


def zeroed_page(path, bucket_path=(b"nested", b"paged")) -> Damage:
    ps = page_size_of(path)
    leaf = leaves(path, bucket_path)[2]
    _write(path, leaf.pgid * ps, bytes(ps))
    return Damage("zeroed-page", (leaf.pgid,), (("invalid-page-type", leaf.pgid),),
                  f"leaf {leaf.pgid} zeroed")


# ---------------------------------------------------------------- branch pointers
def _retarget(path, bucket_path, target_of: Callable[[Node, int, int], int], kind: str,
              code: str, depth: int = 0, idx: int = 1, orphan: bool = True,
              target_page_is_finding: bool = True) -> Damage:
    ps, hwm, _ = _geometry(path)
    br = first_branch(path, bucket_path, depth)
    target = target_of(br, hwm, ps)
    old = br.children[idx]
    write_branch_element(path, br.pgid, idx, ps, pgid=target)
    expect = [(code, target if target_page_is_finding else br.pgid)]
    if orphan:
        expect.append(("unreachable-unfreed", old))
    return Damage(kind, (br.pgid,), tuple(expect),
                  f"branch page {br.pgid} element {idx}: child {old} -> {target}",
                  extra={"branch": br.pgid, "old_child": old, "target": target})


def branch_to_meta(path, bucket_path=(b"nested", b"paged"), meta_page: int = 0) -> Damage:
    return _retarget(path, bucket_path, lambda br, hwm, ps: meta_page,
                     f"branch-to-meta-{meta_page}", "invalid-page-type")


def branch_to_page1(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return branch_to_meta(path, bucket_path, 1)


def branch_to_freelist(path, bucket_path=(b"nested", b"paged")) -> Damage:
    with DB(path) as db:
        fl = db.meta.freelist
    d = _retarget(path, bucket_path, lambda br, hwm, ps: fl, "branch-to-freelist",
                  "invalid-page-type")
    d.expect += (("multiple-references", fl),)
    return d


def branch_to_self(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return _retarget(path, bucket_path, lambda br, hwm, ps: br.pgid, "branch-to-self",
                     "page-cycle")


def branch_to_ancestor(path, bucket_path=(b"deep",)) -> Damage:
    """A depth-1 branch page points back at the bucket's root page: a cycle."""
    return _retarget(path, bucket_path, lambda br, hwm, ps: br.parent, "branch-to-ancestor",
                     "page-cycle", depth=1)


def branch_past_pgid(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """Child id at pgid + 1: above the high-water mark, inside the preallocated file."""
    return _retarget(path, bucket_path, lambda br, hwm, ps: hwm + 1, "branch-past-pgid",
                     "page-out-of-bounds")


def branch_past_eof(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """Child id far past the end of the file (and the high-water mark)."""
    return _retarget(path, bucket_path,
                     lambda br, hwm, ps: hwm + (1 << 20), "branch-past-eof",
                     "page-out-of-bounds")


def branch_duplicate_child(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """Elements 1 and 2 of a branch page point at the same page."""
    return _retarget(path, bucket_path, lambda br, hwm, ps: br.children[1],
                     "branch-duplicate-child", "multiple-references", idx=2)


def branch_count_too_large(path, bucket_path=(b"nested", b"paged")) -> Damage:
    br = first_branch(path, bucket_path)
    write_header(path, br.pgid, count=0xFFFF)
    # element 0's pos still says where the data starts: the count comes back
    return Damage("branch-count-too-large", (br.pgid,), (("element-count-corrupt", br.pgid),),
                  f"branch page {br.pgid} count 0xFFFF")


def branch_empty(path, bucket_path=(b"live",)) -> Damage:
    """A branch page with count 0: bbolt never writes one.  Element 0's pos
    still says how many elements there are, so they come back."""
    br = first_branch(path, bucket_path)
    write_header(path, br.pgid, count=0)
    return Damage("branch-empty", (br.pgid,), (("element-count-corrupt", br.pgid),),
                  f"branch page {br.pgid} count 0")


def branch_empty_unrecoverable(path, bucket_path=(b"live",)) -> Damage:
    """Count 0 and element 0's pos broken too: the children are lost."""
    br = first_branch(path, bucket_path)
    write_header(path, br.pgid, count=0)
    write_branch_element(path, br.pgid, 0, pos=7)
    return Damage("branch-empty-unrecoverable", (br.pgid,), (("branch-empty", br.pgid),),
                  f"branch page {br.pgid} count 0, element 0 pos 7")


def leaf_count_zero(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """A leaf below a branch with count 0 (bbolt never writes one): the
    records come back from element 0's pos."""
    leaf = leaves(path, bucket_path)[1]
    write_header(path, leaf.pgid, count=0)
    return Damage("leaf-count-zero", (leaf.pgid,), (("element-count-corrupt", leaf.pgid),),
                  f"leaf page {leaf.pgid} count 0")


# ---------------------------------------------------------------- leaf elements
def _leaf_target(path, bucket_path=(b"nested", b"paged"), which: int = 1):
    return leaves(path, bucket_path)[which]


def leaf_count_too_large(path, bucket_path=(b"nested", b"paged")) -> Damage:
    leaf = _leaf_target(path, bucket_path)
    write_header(path, leaf.pgid, count=0xFFFF)
    return Damage("leaf-count-too-large", (leaf.pgid,), (("element-count-corrupt", leaf.pgid),),
                  f"leaf page {leaf.pgid} count 0xFFFF")


def leaf_count_and_pos_damaged(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """Count 0xFFFF and element 0's pos broken too: the real count is lost."""
    leaf = _leaf_target(path, bucket_path)
    write_header(path, leaf.pgid, count=0xFFFF)
    write_leaf_element(path, leaf.pgid, 0, pos=7)
    return Damage("leaf-count-and-pos-damaged", (leaf.pgid,),
                  (("element-count-overflow", leaf.pgid),),
                  f"leaf page {leaf.pgid} count 0xFFFF, element 0 pos 7")


def _leaf_element(path, bucket_path, name: str, code: str, what: str, **fields) -> Damage:
    """Element 3 of the bucket's second leaf gets ``fields`` written over it."""
    leaf = _leaf_target(path, bucket_path)
    write_leaf_element(path, leaf.pgid, 3, **fields)
    return Damage(name, (leaf.pgid,), ((code, leaf.pgid),), f"leaf page {leaf.pgid} element 3 {what}")


def leaf_pos_out_of_page(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return _leaf_element(path, bucket_path, "leaf-pos-out-of-page", "element-out-of-bounds",
                         "pos 0x7fff0000", pos=0x7FFF0000)


def leaf_ksize_out_of_page(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return _leaf_element(path, bucket_path, "leaf-ksize-out-of-page", "element-out-of-bounds",
                         "ksize 1 MiB", ksize=0x00100000)


def leaf_vsize_out_of_page(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return _leaf_element(path, bucket_path, "leaf-vsize-out-of-page", "element-out-of-bounds",
                         "vsize 1 MiB", vsize=0x00100000)


def zero_length_key(path, bucket_path=(b"nested", b"paged")) -> Damage:
    return _leaf_element(path, bucket_path, "zero-length-key", "key-empty", "ksize 0", ksize=0)


def keys_swapped(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """Two neighbouring keys of equal length swap places inside one leaf."""
    leaf = _leaf_target(path, bucket_path)
    ps = page_size_of(path)
    i = next(i for i in range(1, len(leaf.keys) - 2)
             if len(leaf.keys[i]) == len(leaf.keys[i + 1]))
    (o1, _), (o2, _) = key_offset(path, leaf.pgid, i, ps), key_offset(path, leaf.pgid, i + 1, ps)
    _write(path, o1, leaf.keys[i + 1])
    _write(path, o2, leaf.keys[i])
    return Damage("keys-swapped", (leaf.pgid,), (("key-order", leaf.pgid),),
                  f"leaf page {leaf.pgid} keys {i} and {i + 1} swapped")


def key_outside_ancestor_range(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """The last key of a middle leaf becomes 0xFF..: still in order inside
    its page, but at or above the next branch key of its parent."""
    leaf = _leaf_target(path, bucket_path)
    off, ksize = key_offset(path, leaf.pgid, len(leaf.keys) - 1)
    _write(path, off, b"\xff" * ksize)
    return Damage("key-outside-ancestor-range", (leaf.pgid,), (("key-out-of-range", leaf.pgid),),
                  f"leaf page {leaf.pgid} last key -> ff.. (parent {leaf.parent})")


# ---------------------------------------------------------------- bucket values
def bucket_value_short(path, bucket_path=(b"nested", b"paged")) -> Damage:
    with DB(path) as db:
        pg, idx = bucket_entry(db, bucket_path)
    with DB(path) as db:
        el = read_leaf_element(path, pg, idx, db.page_size)
        root = S.BUCKET_HEADER.unpack_from(
            db.buf, _element_offset(pg, idx, db.page_size) + el.pos + el.ksize)[0]
    write_leaf_element(path, pg, idx, vsize=8)
    # a bucket with its own root page: the header's 16 bytes are still laid
    # out where bbolt wrote them (walk.laid_out_header)
    code = "bucket-value-size-recovered" if root else "bucket-value-short"
    return Damage("bucket-value-short", (pg,), ((code, pg),),
                  f"bucket {bucket_path!r} entry on page {pg} vsize 8")


def _inline_header_offset(path, bucket_path) -> Tuple[int, int]:
    with DB(path) as db:
        pg, idx = bucket_entry(db, bucket_path)
    ps = page_size_of(path)
    el = read_leaf_element(path, pg, idx, ps)
    voff = _element_offset(pg, idx, ps) + el.pos + el.ksize
    b = S.bucket.parse(_read(path, voff, S.BUCKET_HEADER_SIZE))
    assert b.root == 0, "not an inline bucket"
    return pg, voff + S.BUCKET_HEADER_SIZE


def inline_bad_flags(path, bucket_path=(b"nested", b"inline-2")) -> Damage:
    pg, hoff = _inline_header_offset(path, bucket_path)
    hdr = S.page.parse(_read(path, hoff, S.PAGE_HEADER_SIZE))
    hdr.flags = S.BRANCH_PAGE_FLAG
    _write(path, hoff, S.page.build(hdr))
    return Damage("inline-bad-flags", (pg,), (("inline-bucket-malformed", pg),),
                  f"inline bucket {bucket_path!r} (on page {pg}) header flags branch")


def inline_count_too_large(path, bucket_path=(b"nested", b"inline-2")) -> Damage:
    pg, hoff = _inline_header_offset(path, bucket_path)
    hdr = S.page.parse(_read(path, hoff, S.PAGE_HEADER_SIZE))
    hdr.count = 500
    _write(path, hoff, S.page.build(hdr))
    return Damage("inline-count-too-large", (pg,), (("element-count-corrupt", pg),),
                  f"inline bucket {bucket_path!r} (on page {pg}) count 500")


def bucket_root_out_of_range(path, bucket_path=(b"nested", b"paged")) -> Damage:
    _, hwm, _ = _geometry(path)
    with DB(path) as db:
        pg, idx = bucket_entry(db, bucket_path)
    ps = page_size_of(path)
    el = read_leaf_element(path, pg, idx, ps)
    voff = _element_offset(pg, idx, ps) + el.pos + el.ksize
    b = S.bucket.parse(_read(path, voff, S.BUCKET_HEADER_SIZE))
    old, b.root = b.root, hwm + 100
    _write(path, voff, S.bucket.build(b))
    return Damage("bucket-root-out-of-range", (pg,),
                  (("page-out-of-bounds", hwm + 100), ("unreachable-unfreed", old)),
                  f"bucket {bucket_path!r} root {old} -> {hwm + 100}")


def root_entry_not_bucket(path, name: bytes = b"long-keys") -> Damage:
    with DB(path) as db:
        pg, idx = bucket_entry(db, (name,))
        root = find_bucket(db, (name,)).root
    write_leaf_element(path, pg, idx, flags=0)
    return Damage("root-entry-not-bucket", (pg,),
                  (("root-entry-not-bucket", pg), ("unreachable-unfreed", root)),
                  f"top-level {name!r} (page {pg}) loses its bucket flag")


# ---------------------------------------------------------------- freelist
def _freelist_edit(path, kind, edit, code_pages) -> Damage:
    fl, ids = freelist_ids(path)
    new, expect = edit(fl, list(ids))
    write_freelist(path, new)
    return Damage(kind, (fl,), tuple(expect), f"freelist page {fl}: {kind}")


def freelist_duplicate(path) -> Damage:
    def edit(fl, ids):
        lost = ids[5]
        ids[5] = ids[4]
        return ids, [("already-freed", ids[4]), ("unreachable-unfreed", lost)]
    return _freelist_edit(path, "freelist-duplicate", edit, None)


def freelist_reserved(path, reserved: int = 0) -> Damage:
    def edit(fl, ids):
        lost = ids[0]
        return sorted([reserved] + ids[1:]), [("freelist-reserved-page", reserved),
                                              ("unreachable-unfreed", lost)]
    return _freelist_edit(path, f"freelist-id-{reserved}", edit, None)


def freelist_id1(path) -> Damage:
    return freelist_reserved(path, 1)


def freelist_past_pgid(path) -> Damage:
    _, hwm, _ = _geometry(path)

    def edit(fl, ids):
        lost = ids[-1]
        return ids[:-1] + [hwm + 5], [("freelist-out-of-bounds", hwm + 5),
                                      ("unreachable-unfreed", lost)]
    return _freelist_edit(path, "freelist-past-pgid", edit, None)


def freelist_self(path) -> Damage:
    def edit(fl, ids):
        lost = ids[3]
        return sorted(ids[:3] + ids[4:] + [fl]), [("freelist-self", fl),
                                                 ("unreachable-unfreed", lost)]
    return _freelist_edit(path, "freelist-self", edit, None)


def freelist_reachable(path, bucket_path=(b"live",)) -> Damage:
    leaf = leaves(path, bucket_path)[0].pgid

    def edit(fl, ids):
        lost = ids[3]
        return sorted(ids[:3] + ids[4:] + [leaf]), [("reachable-freed", leaf),
                                                   ("unreachable-unfreed", lost)]
    return _freelist_edit(path, "freelist-reachable", edit, None)


def freelist_leak(path) -> Damage:
    def edit(fl, ids):
        return ids[:7] + ids[8:], [("unreachable-unfreed", ids[7])]
    return _freelist_edit(path, "freelist-leak", edit, None)


def freelist_count_past_page(path) -> Damage:
    fl, ids = freelist_ids(path)
    write_freelist(path, ids, count=0xFFFE, escape=False)
    return Damage("freelist-count-past-page", (fl,), (("freelist-count-overflow", fl),),
                  f"freelist page {fl} count 0xFFFE")


def freelist_escape_count_past_page(path) -> Damage:
    fl, ids = freelist_ids(path)
    write_freelist(path, ids, count=1 << 40, escape=True)
    return Damage("freelist-escape-count-past-page", (fl,), (("freelist-count-overflow", fl),),
                  f"freelist page {fl} count escape 0xFFFF, real count 2**40")


def freelist_wrong_type(path) -> Damage:
    fl, _ = freelist_ids(path)
    write_header(path, fl, flags=S.LEAF_PAGE_FLAG)
    return Damage("freelist-wrong-type", (fl,), (("freelist-invalid-type", fl),),
                  f"freelist page {fl} flags leaf")


def freelist_overflow_too_large(path) -> Damage:
    """The freelist page claims an overflow run over tree pages and past pgid."""
    ps, hwm, _ = _geometry(path)
    fl, _ = freelist_ids(path)
    with DB(path) as db:
        tree_after = sorted(p for n in tree(db, db.meta.root) for p in [n.pgid] if p > fl)
    write_header(path, fl, ps, overflow=hwm - fl + 2)
    expect = [("freelist-out-of-bounds", fl)]
    if tree_after:
        expect.append(("multiple-references", tree_after[0]))
    return Damage("freelist-overflow-too-large", (fl,), tuple(expect),
                  f"freelist page {fl} overflow {hwm - fl + 2}")


def leaf_overflow_too_large(path, bucket_path=(b"nested", b"paged")) -> Damage:
    """A leaf claims an overflow run covering its right-hand siblings."""
    lv = leaves(path, bucket_path)
    leaf, nxt = lv[1], lv[2]
    write_header(path, leaf.pgid, overflow=nxt.pgid - leaf.pgid if nxt.pgid > leaf.pgid else 3)
    # boltfix claims only the run the leaf's elements need, so the sibling is
    # still followed through its real pointer (bbolt: multiple references)
    return Damage("leaf-overflow-too-large", (leaf.pgid,),
                  (("page-overflow-too-large", leaf.pgid),),
                  f"leaf page {leaf.pgid} overflow over page {nxt.pgid}")


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Kind:
    name: str
    shape: str
    fn: Callable[..., Damage]

    def apply(self, path) -> Damage:
        return self.fn(path)


KINDS: Dict[str, Kind] = {k.name: k for k in [
    Kind("meta-bad-magic", "nested", meta_bad_magic),
    Kind("meta-bad-version", "nested", meta_bad_version),
    Kind("meta-bad-checksum", "nested", meta_bad_checksum),
    Kind("meta-bad-page-size", "nested", meta_bad_page_size),
    Kind("meta-0-bad-page-size", "nested", meta0_bad_page_size),
    Kind("meta-root-out-of-range", "nested", meta_root_out_of_range),
    Kind("meta-freelist-out-of-range", "nested", meta_freelist_out_of_range),
    Kind("both-metas-invalid", "nested", both_metas_invalid),
    Kind("newest-meta-torn", "nested", newest_meta_torn),
    Kind("file-truncated", "nofreelist", file_truncated),
    Kind("page-self-id-mismatch", "nested", page_self_id_mismatch),
    Kind("zeroed-page", "nested", zeroed_page),
    Kind("branch-to-meta-0", "nested", branch_to_meta),
    Kind("branch-to-meta-1", "nested", branch_to_page1),
    Kind("branch-to-freelist", "nested", branch_to_freelist),
    Kind("branch-to-self", "nested", branch_to_self),
    Kind("branch-to-ancestor", "deep", branch_to_ancestor),
    Kind("branch-past-pgid", "nested", branch_past_pgid),
    Kind("branch-past-eof", "nested", branch_past_eof),
    Kind("branch-duplicate-child", "nested", branch_duplicate_child),
    Kind("branch-count-too-large", "nested", branch_count_too_large),
    Kind("branch-empty", "nofreelist", branch_empty),
    Kind("branch-empty-unrecoverable", "nofreelist", branch_empty_unrecoverable),
    Kind("leaf-count-zero", "nested", leaf_count_zero),
    Kind("leaf-count-too-large", "nested", leaf_count_too_large),
    Kind("leaf-count-and-pos-damaged", "nested", leaf_count_and_pos_damaged),
    Kind("leaf-pos-out-of-page", "nested", leaf_pos_out_of_page),
    Kind("leaf-ksize-out-of-page", "nested", leaf_ksize_out_of_page),
    Kind("leaf-vsize-out-of-page", "nested", leaf_vsize_out_of_page),
    Kind("zero-length-key", "nested", zero_length_key),
    Kind("keys-swapped", "nested", keys_swapped),
    Kind("key-outside-ancestor-range", "nested", key_outside_ancestor_range),
    Kind("bucket-value-short", "nested", bucket_value_short),
    Kind("inline-bad-flags", "nested", inline_bad_flags),
    Kind("inline-count-too-large", "nested", inline_count_too_large),
    Kind("bucket-root-out-of-range", "nested", bucket_root_out_of_range),
    Kind("root-entry-not-bucket", "nested", root_entry_not_bucket),
    Kind("freelist-duplicate", "freed", freelist_duplicate),
    Kind("freelist-id-0", "freed", freelist_reserved),
    Kind("freelist-id-1", "freed", freelist_id1),
    Kind("freelist-past-pgid", "freed", freelist_past_pgid),
    Kind("freelist-self", "freed", freelist_self),
    Kind("freelist-count-past-page", "freed", freelist_count_past_page),
    Kind("freelist-escape-count-past-page", "freed", freelist_escape_count_past_page),
    Kind("freelist-reachable", "freed", freelist_reachable),
    Kind("freelist-leak", "freed", freelist_leak),
    Kind("freelist-wrong-type", "freed", freelist_wrong_type),
    Kind("freelist-overflow-too-large", "nested", freelist_overflow_too_large),
    Kind("freelist-overflow-over-tree", "freed", freelist_overflow_too_large),
    Kind("leaf-overflow-too-large", "nested", leaf_overflow_too_large),
]}


def apply_every_kind(root: Path) -> Dict[str, Tuple[Path, Damage]]:
    """Every damage kind applied once, each to its own copy of its fixture
    in a folder of ``root`` named after the kind."""
    made = {}
    for name, k in KINDS.items():
        d = Path(root) / name
        d.mkdir()
        path = copy_fixture(k.shape, d)
        made[name] = (path, k.apply(path))
    return made

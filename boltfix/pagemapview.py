"""``pages --map``: the file as a picture, a grid of pages.

Every page gets one class (:data:`CLASSES`), each with its own colour and
its own character, so the grid reads without colour too:

* ``M`` meta, ``#`` reachable (a tree page or its overflow run), ``F`` the
  freelist page (and its run), ``.`` free (the synced freelist lists it, or
  without a usable synced freelist, below the high-water mark and not
  reached), ``?`` unreachable (below the high-water mark, neither reached
  nor free: leaked or orphan), ``-`` past the high-water mark (in the file,
  never allocated by the meta in use);
* ``o`` the other tree's: not in use by this tree, reached by the other
  valid meta's tree (the commit before, whose pages are pending free);
* ``X`` damaged: an invalid meta page, a page the walk reported a finding on (a pointer to a page
  outside the file marks the page holding the pointer), or a page both in
  use and listed free;
* ``!`` past the end of the file: below the high-water mark, but the file
  does not hold it (a truncated file).

A big file is drawn with each cell standing for a run of pages, showing the
worst class in it (:data:`CLASSES` is ordered best to worst): a damaged page
is never hidden by its neighbours.  Memory: the page map's byte per page
of the file, the other tree's reach map (a byte per page below its
high-water mark, none past it) and one chunk of classes at a time.

:class:`Survey` walks both trees once, :meth:`Survey.picture` (or
:func:`build`) makes the :class:`Picture` at a size, :func:`render`
draws it with rich, :func:`svg` writes it as SVG text and
:func:`write_svg` puts that in a new file (temp file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from boltfix import repair
from boltfix.errors import BoltError
from boltfix.leaves import Tree
from boltfix.pagemap import (
    BEYOND_HWM,
    FREELIST,
    FREELIST_RUN,
    LISTED,
    META,
    OVERFLOW,
    REACHED,
    UNREACHED,
    PageMap,
)
from boltfix.reader import DB
from boltfix.walk import Walker

# classes, best to worst: a cell of many pages shows its highest
C_NONE, C_BEYOND, C_REACHED, C_META, C_FREELIST, C_FREE, C_OTHER, C_UNREACHED, \
    C_PAST_EOF, C_DAMAGED = range(10)


@dataclass(frozen=True)
class PageClass:
    """How one class of page is drawn and named."""

    code: int
    key: str  # the JSON / legend name
    char: str
    style: str  # rich style
    colour: str  # SVG fill
    meaning: str


#: the classes, best to worst (the order a cell's worst page is chosen by)
CLASSES = (
    PageClass(C_BEYOND, "beyond-hwm", "-", "grey42", "#d9d9d9",
              "in the file, at or past the high-water mark"),
    PageClass(C_REACHED, "reachable", "#", "green", "#3a9b3f",
              "reached from the root (tree page or overflow)"),
    PageClass(C_META, "meta", "M", "bold bright_white on blue", "#1f3c88", "meta page 0 or 1"),
    PageClass(C_FREELIST, "freelist", "F", "bold cyan", "#17a2b8",
              "the synced freelist's page (and its run)"),
    PageClass(C_FREE, "free", ".", "bright_blue", "#9ecbf5",
              "listed free (unsynced freelist: not reached)"),
    PageClass(C_OTHER, "other-tree", "o", "magenta", "#b05fc4",
              "reached only by the other meta's tree"),
    PageClass(C_UNREACHED, "unreachable", "?", "bold yellow", "#f2b705",
              "neither reached nor free (leaked or orphan)"),
    PageClass(C_PAST_EOF, "past-eof", "!", "bold bright_white on dark_red", "#5c0a0a",
              "the meta counts it, the file does not hold it"),
    PageClass(C_DAMAGED, "damaged", "X", "bold white on red", "#ff1a1a",
              "an invalid meta, or the walk found a problem here"),
)
BY_CODE = {c.code: c for c in CLASSES}

#: the terminal grid: columns, and rows at most
TERM_COLUMNS, TERM_ROWS = 64, 32
#: the SVG grid
SVG_COLUMNS, SVG_ROWS = 128, 128
#: pages classified at a time (a multiple of the pages per cell)
CHUNK_PAGES = 1 << 22
#: pages with a finding remembered at most (a hostile file may have millions)
MAX_DAMAGED = 100_000
_OTHER_BIT = 0x10


@dataclass
class Picture:
    """The page map as cells: what :func:`render` and :func:`svg` draw."""

    filename: str
    page_size: int
    pages_in_file: int
    hwm: int
    #: pages the grid covers (the file, or up to the high-water mark)
    total: int
    per_cell: int
    columns: int
    #: one class code per cell
    cells: bytearray
    #: pages per class key (each page counted once, before cells)
    counts: Dict[str, int]
    meta_index: Optional[int] = None
    other_index: Optional[int] = None
    notes: List[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows of the grid."""
        return (len(self.cells) + self.columns - 1) // self.columns


def _state_table(has_tree: bool, synced: bool) -> bytes:
    """Page map state byte -> class, for one walk (as ``pages`` lists them:
    without a synced freelist, every page the tree does not reach is free)."""
    out = bytearray(256)
    for b in range(256):
        s, listed = b & 0x7F, bool(b & LISTED)
        if s == META:
            c = C_META
        elif s in (FREELIST, FREELIST_RUN):
            c = C_FREELIST
        elif s in (REACHED, OVERFLOW):
            c = C_DAMAGED if listed else C_REACHED
        elif s == BEYOND_HWM:
            c = C_BEYOND
        elif s == UNREACHED and has_tree and (listed or not synced):
            c = C_FREE
        else:
            c = C_UNREACHED
        out[b] = c
    return bytes(out)


#: a class with the other tree's bit -> the class drawn (only pages this
#: tree does not use become the other tree's)
_MERGE = bytes((C_OTHER if b & _OTHER_BIT and b & 0x0F in (C_FREE, C_UNREACHED, C_BEYOND)
                else b & 0x0F) for b in range(256))
_REACHED_BIT = bytes([0] + [_OTHER_BIT] * 255)


def _other_walker(db: DB, progress) -> Optional[Walker]:
    """A walk of the other valid meta's tree, when it names another tree."""
    if db.meta is None:
        return None
    other = db.metas[1 - db.meta.index]
    if not other.valid or Tree.of(other) == Tree.of(db.meta):
        return None
    w = Walker(db, tree=Tree.of(other), progress=progress)
    w.count_all()
    return w


class _Damage:
    """The pages the walk reported findings on (bounded), and pointers out
    of the file."""

    def __init__(self, limit: int, pages_in_file: int):
        self.limit, self.n = limit, pages_in_file
        self.pages: set = set()
        self.outside: List[int] = []  # targets past the end of the file
        self.holders = 0  # pages marked for holding a pointer out of the tree's range
        self.more = 0

    def __call__(self, f) -> None:
        page = f.page
        if page is None:
            return
        if page >= self.limit:
            # a pointer out of the tree's range: the page holding it is damaged
            if page >= self.n and len(self.outside) < 20:
                self.outside.append(page)
            inside = [p for p in f.pages if p < self.limit and p != page]
            if not inside:
                return
            page = inside[-1]
            self.holders += 1
        if len(self.pages) < MAX_DAMAGED:
            self.pages.add(page)
        else:
            self.more += 1


class Survey:
    """The walks behind a picture (the tree in use, the other meta's), made
    once; :meth:`picture` draws them at any size."""

    def __init__(self, db: DB, progress: Optional[Callable[[int], None]] = None):
        self.db = db
        n = self.n = db.pages_in_file
        self.hwm = db.meta.pgid if db.meta is not None else n
        self.damage = _Damage(min(n, self.hwm), n)
        walker = Walker(db, self.damage, progress)
        walker.count_all()
        self.pm = PageMap(db, walker)
        del walker  # its map is copied into the page map: one byte per page, not two
        self.other = _other_walker(db, progress)
        self.table = _state_table(self.pm.has_tree, self.pm.synced)
        # a meta page that fails its checks is damage too
        bad_metas = {m.index for m in db.metas if not m.valid and m.index < n}
        self.damaged = sorted(self.damage.pages | bad_metas)

    @property
    def total(self) -> int:
        """Pages the picture covers: the file, or up to the high-water mark."""
        return max(self.n, self.hwm)

    def svg_picture(self) -> Picture:
        """The picture at the SVG's size (:func:`svg_columns`)."""
        return self.picture(svg_columns(self.total), SVG_ROWS)

    def picture(self, columns: int = TERM_COLUMNS, max_rows: int = TERM_ROWS) -> Picture:
        """The grid: at most ``columns`` x ``max_rows`` cells."""
        db, n, hwm, total = self.db, self.n, self.hwm, self.total
        per_cell = max(1, -(-total // (columns * max_rows)))
        ncells = -(-total // per_cell)
        pic = Picture(db.filename, db.page_size, n, hwm, total, per_cell,
                      min(columns, max(ncells, 1)), bytearray(ncells),
                      {c.key: 0 for c in CLASSES},
                      db.meta.index if db.meta is not None else None,
                      1 - db.meta.index if self.other is not None else None)
        counts = [0] * 16
        chunk = max(per_cell, CHUNK_PAGES // per_cell * per_cell)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            cls = _classes(self.pm, self.table, self.other, self.damaged, start, stop)
            for code in range(1, 10):
                counts[code] += cls.count(code)
            for i in range(0, stop - start, per_cell):
                pic.cells[(start + i) // per_cell] = max(cls[i:i + per_cell])
        if hwm > n:  # the pages past the end of the file, never stored
            counts[C_PAST_EOF] += hwm - n
            first = n // per_cell
            pic.cells[first] = max(pic.cells[first], C_PAST_EOF)
            pic.cells[first + 1:] = bytes([C_PAST_EOF]) * (ncells - first - 1)
        for c in CLASSES:
            pic.counts[c.key] = counts[c.code]
        _notes(pic, db, self.pm, self.damage)
        return pic


def build(db: DB, columns: int = TERM_COLUMNS, max_rows: int = TERM_ROWS,
          progress: Optional[Callable[[int], None]] = None) -> Picture:
    """Walk the tree in use (and the other meta's) and make the picture."""
    return Survey(db, progress).picture(columns, max_rows)


def _classes(pm: PageMap, table: bytes, other: Optional[Walker], damaged: List[int],
             start: int, stop: int) -> bytearray:
    """The class of every page in ``start:stop`` (all in the file)."""
    cls = bytearray(pm.states[start:stop].translate(table))
    if other is not None and start < len(other.reached):
        seen = other.reached[start:stop]
        if seen.count(0) != len(seen):
            # merge the two maps a chunk at a time in C (big integers), not
            # page by page in Python
            bits = bytes(seen.translate(_REACHED_BIT)) + bytes(len(cls) - len(seen))
            both = int.from_bytes(cls, "big") | int.from_bytes(bits, "big")
            cls = bytearray(both.to_bytes(len(cls), "big").translate(_MERGE))
    for i in range(bisect_left(damaged, start), bisect_left(damaged, stop)):
        cls[damaged[i] - start] = C_DAMAGED
    return cls


def _notes(pic: Picture, db: DB, pm: PageMap, damage: _Damage) -> None:
    if db.meta is None:
        pic.notes.append("no valid meta page: no tree was walked")
    elif pm.has_tree and not pm.synced:
        pic.notes.append("the freelist is not synced: free = below the high-water mark "
                         "and not reached")
    if damage.outside:
        ids = ", ".join(str(p) for p in damage.outside[:5])
        held = "; the pages holding such pointers are marked damaged" if damage.holders else ""
        pic.notes.append(f"the tree points past the end of the file (page {ids}"
                         f"{', ...' if len(damage.outside) > 5 else ''}){held}")
    if damage.more:
        pic.notes.append(f"{damage.more:,} more findings not placed on the map")


# ---------------------------------------------------------------- text
def header_lines(pic: Picture) -> List[str]:
    """What the picture shows, in words (the terminal's header and the SVG's)."""
    meta = "none" if pic.meta_index is None else str(pic.meta_index)
    other = "" if pic.other_index is None else f", other tree: meta {pic.other_index}"
    cell = ("1 page per cell" if pic.per_cell == 1
            else f"{pic.per_cell:,} pages per cell (the worst page of each shown)")
    return [f"{pic.pages_in_file:,} pages in the file, high-water mark {pic.hwm:,}, "
            f"page size {pic.page_size}",
            f"meta in use: {meta}{other}",
            f"{cell}; {pic.columns} columns x {pic.rows} rows"] + pic.notes


def render(c, pic: Picture) -> None:
    """Draw the picture on a rich console: header, grid, legend with counts."""
    from rich.text import Text  # lazily: rich is slow to import

    c.print(Text(f"page map of {pic.filename}", style="bold"))
    for line in header_lines(pic):
        c.print(Text(line))
    width = len(f"{max(pic.total - 1, 0):,}")
    for row in range(pic.rows):
        first = row * pic.columns
        line = Text(f"{first * pic.per_cell:>{width},} ", style="dim")
        cells = pic.cells[first:first + pic.columns]
        for code, run in _runs(cells):
            k = BY_CODE.get(code)
            line.append((k.char if k else " ") * run, style=k.style if k else "")
        c.print(line, no_wrap=True, overflow="ignore", crop=False)
    for k in reversed(CLASSES):
        count = pic.counts[k.key]
        legend = Text("  ")
        legend.append(k.char, style=k.style)
        legend.append(f" {k.key:<12}{count:>12,}  {k.meaning}",
                      style="" if count else "dim")
        c.print(legend, no_wrap=True, overflow="ellipsis")


def _runs(cells) -> List[tuple]:
    """(class, length) of each run of equal cells."""
    out: List[list] = []
    for code in cells:
        if out and out[-1][0] == code:
            out[-1][1] += 1
        else:
            out.append([code, 1])
    return [tuple(r) for r in out]


# ---------------------------------------------------------------- SVG
_LEFT, _TOP = 96, 72
#: the SVG grid's width in pixels at most (cells of 8 to 24 pixels)
_GRID_PIXELS = 1024


def xml_text(s: str) -> str:
    """``s`` safe in XML text and attributes: specials escaped, control
    characters (and undecodable bytes of a file name) shown as ``\\xNN``."""
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return html.escape("".join(out), quote=True)


def svg_columns(total: int) -> int:
    """Columns of the SVG grid for ``total`` pages: a small file is drawn
    about twice as wide as high, a big one :data:`SVG_COLUMNS` wide."""
    wide = 16
    while wide < SVG_COLUMNS and wide * wide < 2 * total:
        wide *= 2
    return wide


def svg(pic: Picture) -> str:
    """The picture as a standalone SVG document: title, header, the grid
    (one rect per run of equal cells, each with a tooltip of its pages),
    row labels, a legend with counts, and the notes."""
    cell = max(8, min(24, _GRID_PIXELS // 2 // pic.columns))
    head = header_lines(pic)
    legend = [f"{k.char} {k.key}: {pic.counts[k.key]:,} pages - {k.meaning}"
              for k in reversed(CLASSES)]
    legend_top = _TOP + pic.rows * cell + 24
    notes_top = legend_top + 18 * len(CLASSES) + 16
    longest = max(len(line) for line in head + legend) + 4
    width = max(_LEFT + pic.columns * cell + 16, 16 + int(6.7 * longest))
    height = notes_top + 14 * len(head[3:]) + 8
    title = f"page map of {xml_text(pic.filename)}"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
        f"<title>{title}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="16" font-size="13" font-weight="bold">{title}</text>',
    ]
    parts += [f'<text x="8" y="{32 + 12 * i}">{xml_text(line)}</text>'
              for i, line in enumerate(head[:3])]
    parts.append(f'<g id="grid" transform="translate({_LEFT},{_TOP})">')
    parts += _svg_cells(pic, cell)
    parts.append("</g>")
    step = 1 if cell >= 16 else 4
    parts += [f'<text x="{_LEFT - 4}" y="{_TOP + row * cell + min(cell, 10)}" '
              f'text-anchor="end" font-size="9" fill="#555555">'
              f"{row * pic.columns * pic.per_cell}</text>" for row in range(0, pic.rows, step)]
    parts.append(f'<g id="legend" transform="translate(8,{legend_top})">')
    for i, (k, line) in enumerate(zip(reversed(CLASSES), legend)):
        parts.append(f'<rect x="0" y="{i * 18}" width="12" height="12" fill="{k.colour}" '
                     f'stroke="#000000" stroke-width="0.5"/>')
        parts.append(f'<text x="18" y="{i * 18 + 10}">{xml_text(line)}</text>')
    parts.append("</g>")
    parts += [f'<text x="8" y="{notes_top + 14 * i}" class="note">{xml_text(line)}</text>'
              for i, line in enumerate(head[3:])]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg_cells(pic: Picture, cell: int) -> List[str]:
    """The grid's rects (a run of equal cells in a row is one rect), and
    white lines between the cells when they are big enough to tell apart."""
    out = []
    for row in range(pic.rows):
        first = row * pic.columns
        x = 0
        for code, run in _runs(pic.cells[first:first + pic.columns]):
            k = BY_CODE.get(code)
            if k is not None:
                lo = (first + x) * pic.per_cell
                hi = min((first + x + run) * pic.per_cell, pic.total) - 1
                out.append(f'<rect x="{x * cell}" y="{row * cell}" width="{run * cell}" '
                           f'height="{cell}" fill="{k.colour}" class="{k.key}">'
                           f"<title>pages {lo}-{hi}: {k.key}</title></rect>")
            x += run
    if cell >= 12:
        w, h = pic.columns * cell, pic.rows * cell
        lines = [f"M{x * cell} 0V{h}" for x in range(1, pic.columns)]
        lines += [f"M0 {y * cell}H{w}" for y in range(1, pic.rows)]
        out.append(f'<path d="{" ".join(lines)}" stroke="#ffffff" stroke-width="1"/>')
    return out


# ---------------------------------------------------------------- the file
def refuse_output(out: str, src: str, force: bool) -> None:
    """Raise BoltError when ``out`` may not be written (repair's rule for
    every path boltfix writes: :func:`boltfix.repair.refuse_output`)."""
    repair.refuse_output(src, out, force, option="--map-svg")


def write_svg(pic: Picture, out: str, src: str, force: bool = False) -> int:
    """Write the SVG to ``out`` (never ``src``): a temp file beside it,
    fsynced, then moved into place (without ``force``, linked: never over a
    file that appeared meanwhile).  Returns the bytes written."""
    refuse_output(out, src, force)
    data = svg(pic).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(out))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".boltfix-map-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise BoltError(f"cannot write in {directory}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp's 0600 is for secrets
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, out)
        else:
            os.link(tmp, out)
        repair.fsync_dir(directory)
    except FileExistsError as exc:
        raise BoltError(f"{out} appeared while writing the map; nothing replaced") from exc
    except OSError as exc:
        raise BoltError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return len(data)

"""One CLI command's life: its exit code, signals, the input that changes
under it, its progress bar, its output streams.

Exit codes (every command):
  0  done; for ``check``: no problems
  1  problems found (``check``), data not recoverable (``repair``), key absent (``get``)
  2  the file could not be opened, the request was refused, or the output could
     not be written (full or read-only filesystem...); nothing written
  3  an internal error in boltfix (a bug: please report it)
  4  stopped part-way: the input changed (shrank, was rewritten) while it was
     read; output already printed is incomplete; repair wrote nothing
  130, 143  interrupted by SIGINT / SIGTERM; repair wrote nothing

Every command is wrapped in :func:`guarded`; the commands themselves are
:mod:`boltfix.cli`'s.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import stat
import sys
from typing import TYPE_CHECKING, Optional

import click

from boltfix import guard, jsonout
from boltfix.errors import BoltError, FileChanged
from boltfix.text import name_text

if TYPE_CHECKING:  # imported where needed: `boltfix --help` never loads it
    from boltfix.reader import DB

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT = 0, 1, 2
#: an internal error in boltfix: a bug, never the input's fault
EXIT_BUG = 3
#: stopped part-way: the input changed while it was read (boltfix.guard)
EXIT_CHANGED = 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal, as a shell reports it



class Terminated(BaseException):
    """SIGTERM arrived: unwind (finally blocks remove temp files), exit 143."""


#: the signal that arrived, kept until the command ends: a handler's
#: exception raised inside a weakref callback or a ``__del__`` (the guard's
#: mmap callbacks) is printed and dropped by Python, and with the signal
#: then ignored nothing else would stop the command.  Raised again at the
#: next batch boundary (:func:`batch_boundary`), and at the end.
_pending: Optional[BaseException] = None


def _on_sigterm(signum, frame):
    global _pending
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    _pending = Terminated()
    raise Terminated()


def _on_sigint(signum, frame):
    # like SIGTERM: once interrupted, nothing may cut the cleanup short (a
    # SIGINT left pending while signals were held, or one during shutdown,
    # must not kill the process after its exit code is chosen)
    global _pending
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pending = KeyboardInterrupt()
    raise KeyboardInterrupt()


def batch_boundary(_done: int = 0) -> None:
    """A progress callback: stop at the first batch after the input changed
    (:func:`boltfix.guard.batch_boundary`) or after a signal whose exception
    was dropped."""
    guard.batch_boundary()
    if _pending is not None:
        raise _pending


def _ended_anyway(pending: BaseException) -> int:
    """A signal arrived after the last batch boundary and its exception was
    dropped: the command went on to its end, so its output is whole; the
    exit code still says it was signalled."""
    term = isinstance(pending, Terminated)
    click.echo(f"boltfix: {'terminated (SIGTERM)' if term else 'interrupted (SIGINT)'} "
               "as the command ended; its output is complete", err=True)
    return EXIT_SIGTERM if term else EXIT_SIGINT


def guarded(f):
    """Map every way a command ends to one exit code and one line on stderr;
    never a traceback.  A change of the input seen at any point (even after a
    normal end) makes it exit 4: what was produced is incomplete."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        global _pending
        _pending = None
        guard.start_session(lease=True)
        try:
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
            old_int = signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread: leave signals alone
            old_term = old_int = None
        code = EXIT_OK
        try:
            f(*args, **kwargs)
            if _pending is not None:  # its exception was dropped: the work went on
                code = _ended_anyway(_pending)
        except SystemExit as exc:
            code = exc.code
        except FileChanged as exc:
            _changed_exit(exc)
        except BoltError as exc:
            if guard.first_change() is not None:
                _changed_exit()  # the change is why the read failed
            click.echo(f"boltfix: {exc}", err=True)
            sys.exit(EXIT_CANNOT)
        except BrokenPipeError:
            # `boltfix dump db | head`: the reader went away; that is fine.
            with contextlib.suppress(Exception):
                sys.stdout = open(os.devnull, "w")
            sys.exit(EXIT_OK)
        except KeyboardInterrupt:
            click.echo(f"boltfix: interrupted (SIGINT); {_PART_WAY}", err=True)
            sys.exit(EXIT_SIGINT)
        except Terminated:
            click.echo(f"boltfix: terminated (SIGTERM); {_PART_WAY}", err=True)
            sys.exit(EXIT_SIGTERM)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # a bug in boltfix, never the user's fault
            if guard.first_change() is not None:
                _changed_exit()
            if os.environ.get("BOLTFIX_DEBUG"):
                raise
            click.echo(f"boltfix: internal error: {type(exc).__name__}: {exc} "
                       "(set BOLTFIX_DEBUG=1 for a traceback; please report it)", err=True)
            sys.exit(EXIT_BUG)
        finally:
            guard.end_session()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
                if signal.getsignal(signal.SIGINT) is _on_sigint:  # not once interrupted
                    signal.signal(signal.SIGINT, old_int)
        if guard.first_change() is not None:
            _changed_exit()
        sys.exit(code)

    return wrapper


def _changed_exit(exc=None) -> None:
    """Exit 4: the input changed while it was read (see boltfix.guard)."""
    if exc is None:
        path, reason = guard.first_change()
        what = f"{path} changed while it was being read: {reason}"
    else:
        what = exc.message
    click.echo(f"boltfix: {what}; {_PART_WAY} (run again on a copy nothing writes to)",
               err=True)
    sys.exit(EXIT_CHANGED)


_PART_WAY = "stopped part-way: any output is incomplete, and repair wrote nothing"


def open_db(path: str, page_size: Optional[int] = None, meta_index: Optional[int] = None,
            need_root: bool = True) -> DB:
    """Open the input for a command; a forced meta (``--meta``) must name
    a root page of the file when the command walks the tree (``need_root``)."""
    from boltfix.reader import DB  # lazily: `boltfix --help` does not load it

    d = DB(path, page_size=page_size, meta=meta_index)
    if need_root and meta_index is not None and not 2 <= d.meta.root < d.pages_in_file:
        # a forced meta whose root is no page (a zeroed meta says root 0,
        # which the walk would take for an inline bucket): nothing to follow
        problems = ", ".join(d.meta.problems) or "no problems"
        d.close()
        raise BoltError(f"{path}: meta {meta_index} cannot be used: its root page "
                        f"{d.meta.root} is not a page of the file ({problems}); try --meta "
                        f"{1 - meta_index}, or `boltfix repair`, which looks for the root")
    return d


def emit_json(data) -> None:
    """``data`` as JSON on stdout (json.dumps' text, streamed without
    recursion: a deep bucket tree)."""
    jsonout.dump(data, sys.stdout, default=_json_default)
    sys.stdout.flush()


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return name_text(bytes(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def progress_bar(description: str, total: Optional[int], enabled: bool = True):
    """A rich progress bar on stderr, only when stderr is a terminal, and only
    once the work has run for a second (short runs stay quiet).

    Yields a callback taking the number of pages done so far; it also stops
    the work (FileChanged) at the first batch after the input changed.
    """
    if not enabled or not sys.stderr.isatty():
        yield batch_boundary  # no bar, but still stop at the first batch after a change
        batch_boundary()  # and before the result is shown
        return
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    count = ("{task.completed:,}/{task.total:,} pages" if total is not None
             else "{task.completed:,} pages")
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(count),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    show_after = time.monotonic() + 1.0
    shown = False

    def update(done: int) -> None:
        nonlocal shown
        batch_boundary()
        if not shown:
            if time.monotonic() < show_after:
                return
            bar.start()
            shown = True
        bar.update(task, completed=done)

    try:
        yield update
        batch_boundary()
    finally:
        if shown:
            bar.stop()


def stdout_is_a_file() -> bool:
    """True when stdout is redirected to a regular file (not a terminal or pipe)."""
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def stdout_gone() -> None:
    """The reader of stdout went away (`| head`): silence stdout for good so
    nothing (not even the flush at exit) prints a traceback."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def console():
    """A rich console on stdout, for the tables."""
    from rich.console import Console  # lazily: rich is slow to import

    return Console()

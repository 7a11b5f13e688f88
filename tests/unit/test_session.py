"""boltfix.session: how a command ends -- exit 2 for what cannot be opened
(a FIFO refused without blocking), never a traceback, `python -m boltfix`,
and every command has its help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from boltfix import session
from boltfix.cli import main
from support.cli import invoke


def run(*args, input=None):
    return invoke(*args, input=input)


# ---------------------------------------------------------------- check


@pytest.mark.parametrize("command", ["inspect", "check", "pages", "dump"])
def test_cannot_open_is_exit_2(command, tmp_path):
    missing = tmp_path / "nope.db"
    r = run(command, missing)
    assert r.exit_code == 2 and "cannot open" in r.output
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    r = run(command, empty)
    assert r.exit_code == 2 and "empty" in r.output
    r = run(command, tmp_path)
    assert r.exit_code == 2


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    r = run("check", fifo)  # opening a FIFO for reading would block forever
    assert r.exit_code == 2 and "not a regular file" in r.output


def test_python_dash_m_and_no_traceback_on_garbage(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(3 * 4096 + 17))
    for command in ("inspect", "check", "pages"):
        p = subprocess.run([sys.executable, "-m", "boltfix", command, str(garbage)],
                           capture_output=True, text=True, timeout=60)
        assert "Traceback" not in p.stderr + p.stdout
        assert p.returncode in (0, 1, 2), p.stderr


def test_every_command_has_help():
    for name, command in main.commands.items():
        r = run(name, "--help")
        assert r.exit_code == 0 and (command.help or "").split("\n")[0][:20] in r.output


def _dropped_signal(handler):
    """Run ``handler`` inside a weakref callback, where Python prints and
    drops the exception it raises (as when SIGTERM lands while the guard's
    mmap callback runs)."""
    import weakref

    class Obj:
        pass

    o = Obj()
    ref = weakref.ref(o, lambda _r: handler(None, None))
    del o
    return ref


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_dropped_in_a_weakref_callback_stops_at_the_next_batch(capsys):
    """The handler's exception is lost, the signal is then ignored: the
    command still stops at its next batch boundary, exit 143."""
    import signal as sig

    reached = []

    @session.guarded
    def cmd():
        _dropped_signal(session._on_sigterm)
        with session.progress_bar("walk", 10, enabled=False) as step:
            step(1)
            reached.append("past the boundary")

    with pytest.raises(SystemExit) as exc:
        cmd()
    assert exc.value.code == session.EXIT_SIGTERM
    assert reached == []
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert sig.getsignal(sig.SIGTERM) is not session._on_sigterm  # restored


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_dropped_after_the_last_batch_still_sets_the_exit_code(capsys):
    """Signalled after its last boundary, a command ends with its output
    whole, and says so; the exit code is still the signal's."""
    @session.guarded
    def cmd():
        _dropped_signal(session._on_sigint)

    with pytest.raises(SystemExit) as exc:
        cmd()
    assert exc.value.code == session.EXIT_SIGINT
    assert "its output is complete" in capsys.readouterr().err

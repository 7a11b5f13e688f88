"""boltfix run as a child process, and what it cost: its exit, output, peak
RSS (VmHWM, read from /proc while it runs) and time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from support import REPO

#: the issue's limit for every hostile file
RSS_LIMIT_MB = 300


def run_child(*args, timeout: float = 300, lines_only: bool = False):
    """(exit code, stdout, stderr, peak RSS in MB, seconds) of ``boltfix ARGS``.

    ``lines_only``: stdout is read in chunks and only (lines, bytes) kept,
    so the test process does not hold a gigabyte of output."""
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "boltfix", *map(str, args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []

    def count():
        lines = size = 0
        while True:
            piece = proc.stdout.read(1 << 20)
            if not piece:
                break
            lines += piece.count(b"\n")
            size += len(piece)
        out.append((lines, size))

    reader = threading.Thread(target=count if lines_only else
                              (lambda: out.append(proc.stdout.read())))
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    errs = []
    err_reader = threading.Thread(target=lambda: errs.append(proc.stderr.read()))
    err_reader.start()
    # the child's own peak (VmHWM), read until it exits: wait4's ru_maxrss
    # carries the RSS of this pytest (which forked it) across the exec
    hwm = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        hwm = max(hwm, _vm_hwm_kb(proc.pid))
        time.sleep(0.002)
    reader.join()
    err_reader.join()
    timer.cancel()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    return code, out[0], errs[0], hwm / 1024, time.monotonic() - t


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def assert_sane(code, err, rss, *, ok=(0, 1)):
    """Never a signal, never exit 3 (an internal error), memory bounded."""
    assert code >= 0, f"killed by signal {-code}: {err[-500:]!r}"
    assert code != 3 and b"internal error" not in err, err[-800:]
    assert code in ok, (code, err[-800:])
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"



def rss_parts(*args, timeout=300):
    """(exit code, stderr, peak VmHWM MB, peak RssFile MB) of ``boltfix ARGS``."""
    proc = subprocess.Popen([sys.executable, "-m", "boltfix", *map(str, args)],
                            cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = {"VmHWM": 0, "RssFile": 0}
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status", "rb") as f:
                for line in f:
                    name = line.split(b":")[0].decode()
                    if name in peak:
                        peak[name] = max(peak[name], int(line.split()[1]) // 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.003)
    if proc.poll() is None:
        proc.kill()
    err = proc.stderr.read()
    proc.wait()
    return proc.returncode, err, peak["VmHWM"], peak["RssFile"]


"""boltfix.vault: the layout test (generic bbolt stays generic) and the
decoders on hostile bytes (never a traceback, a data value masked whole).
The real vault.db is judged in tests/oracle/test_vault.py."""

from __future__ import annotations

import random

import pytest

from boltfix import vault as VT
from support import FIXTURES
from support.cli import inspect_json

BBOLT = sorted((FIXTURES / "bbolt").glob("*.db"))


def test_layout_is_data_and_config_only():
    assert VT.looks_like_vault([b"data", b"config"]) and VT.looks_like_vault(["config", "data"])
    assert not VT.looks_like_vault([b"data"])
    assert not VT.looks_like_vault([b"data", b"config", b"logs"])
    assert not VT.looks_like_vault([])


@pytest.mark.parametrize("path", BBOLT[:3], ids=[p.name for p in BBOLT[:3]])
def test_generic_bbolt_is_not_vault(path):
    info = inspect_json(path)
    assert "vault" not in info and "application" not in info


def test_hostile_values_never_raise():
    rng = random.Random(23)
    for _ in range(3000):
        path = rng.choice([(b"data",), (b"config",), (b"other",)])
        key = rng.choice([b"latest_indexes", b"latest_config", b"local_node_config", b"x"])
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        d = VT.decode_record(path, key, value)
        assert d is None if path == (b"other",) else isinstance(d, dict)
        masked, redacted = VT.mask(path, key, value)
        assert len(masked) == len(value)
        assert redacted == (path == (b"data",) and len(value) > 0)

"""Run pytest with boltfix's C core replaced by a sanitizer build of it.

    python scripts/asan_pytest.py SANITIZED_SO [pytest args...]

Used by scripts/sanitize.sh, which builds the module and preloads the
sanitizer runtimes.
"""
import importlib.util
import sys

import boltfix

path = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location("boltfix._speedups", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["boltfix._speedups"] = module
boltfix._speedups = module

from boltfix import ccore  # noqa: E402  (after the swap, on purpose)

if ccore.speedups is not module:
    sys.exit("the sanitizer build of boltfix._speedups was not picked up")

import pytest  # noqa: E402

sys.exit(pytest.main(sys.argv[1:]))

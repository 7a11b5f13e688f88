"""``python -m boltfix``: the command line."""

from boltfix.cli import main

main()

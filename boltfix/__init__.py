"""boltfix: inspect, check, dump and repair bbolt database files."""

__version__ = "0.1.0"

"""Build the optional C core (boltfix/_speedups.c); everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still succeeds
and boltfix runs its pure-Python walk (slower, same results).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("boltfix._speedups", ["boltfix/_speedups.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"]),
                   # the SIGBUS guard for input that shrinks while it is read (guard.py)
                   Extension("boltfix._guard", ["boltfix/_guard.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])

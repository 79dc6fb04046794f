"""Hotline: the all-in-one suite runner and the ``hotline`` command line."""

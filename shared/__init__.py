"""Hotline's common library: events, bus, database, settings, clock, auth, logging, metrics.

Services import from here and never from each other.
"""

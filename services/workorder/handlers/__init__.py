"""Workorder's handlers, one module per aggregate: they sequence (gather facts, let the
domain decide, apply); rules live in ``domain/``, SQL for rows in ``repository``."""

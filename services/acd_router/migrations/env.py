import importlib

from shared.db import run_alembic_env

# Alembic runs this file outside any package; importing by name (not a static import) keeps
# type checkers from seeing services.acd_router under a second module name.
run_alembic_env(importlib.import_module("services.acd_router.db").metadata)

from shared.db import run_alembic_env
from tests.shared.kit_service import metadata

run_alembic_env(metadata)

"""``python -m services.cti_gateway``: the gateway in its own process."""

from services.cti_gateway.app import create_app
from services.cti_gateway.settings import CtiSettings
from shared.runner import run_standalone

if __name__ == "__main__":
    run_standalone(create_app, CtiSettings())

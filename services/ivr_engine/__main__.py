"""``python -m services.ivr_engine``: the IVR engine in its own process."""

from services.ivr_engine.app import create_app
from services.ivr_engine.settings import IvrSettings
from shared.runner import run_standalone

if __name__ == "__main__":
    run_standalone(create_app, IvrSettings())

from shared.runner import run_standalone

from .app import create_app
from .settings import AcdSettings

if __name__ == "__main__":
    run_standalone(create_app, AcdSettings())

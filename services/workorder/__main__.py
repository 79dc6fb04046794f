from services.workorder.app import create_app
from services.workorder.settings import WorkorderSettings
from shared.runner import run_standalone

if __name__ == "__main__":
    run_standalone(create_app, WorkorderSettings())

from services.softswitch.app import create_app
from services.softswitch.settings import SoftswitchSettings
from shared.runner import run_standalone

if __name__ == "__main__":
    run_standalone(create_app, SoftswitchSettings())

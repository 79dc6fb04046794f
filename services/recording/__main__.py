from services.recording.app import create_app
from services.recording.settings import RecordingSettings
from shared.runner import run_standalone

if __name__ == "__main__":
    run_standalone(create_app, RecordingSettings())

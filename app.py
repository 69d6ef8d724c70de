"""Start the assistant: settings from the environment/.env, build the index if missing, serve Gradio."""

from rag.cli import make_settings
from rag.ui import launch

if __name__ == "__main__":
    launch(make_settings(None))

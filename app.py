"""Start the assistant: settings from the environment/.env, build the index if missing, serve UI + API."""

from rag.config import load_settings
from rag.server import serve

if __name__ == "__main__":
    serve(load_settings())

"""`python -m govsync.cli`: how --background starts the worker, sinks and monitor."""

from govsync.cli import app

if __name__ == "__main__":
    app()

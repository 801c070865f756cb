"""python -m inference_service: serve the API with settings from INFERENCE_* variables."""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn

from vidpipe.config import load_settings

from .app import create_app
from .settings import InferenceSettings


def main() -> None:
    settings = load_settings(InferenceSettings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler it found
    # installed: make that handler report the graceful stop as success (exit 0), as the others do.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,  # finish in-flight requests on SIGTERM
        access_log=False,
    )


if __name__ == "__main__":
    main()

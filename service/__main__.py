"""`python -m service`: serve the model repository with uvicorn (one worker, one process).

One worker keeps memory predictable and the Prometheus metrics in one process; scale by
running more containers.
"""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,  # finish in-flight requests, within compose's 10 s stop
    )


if __name__ == "__main__":
    main()

"""`python -m service`: serve the model repository with uvicorn (one worker, one process).

One worker keeps memory predictable and the Prometheus metrics in one process; scale by
running more containers. Exit status: 0 after a drained shutdown, 3 when models failed to load.
"""

from __future__ import annotations

import logging
import sys

from service.app import DrainingServer, build_config, create_app
from service.core import Settings


def main() -> int:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    server = DrainingServer(build_config(app, settings), app.state.dynalay, settings.drain_delay_s)
    server.run()
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())

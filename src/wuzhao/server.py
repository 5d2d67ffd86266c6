"""Running one node: the HTTP server (uvicorn + uvloop) around the platform.

uvicorn owns the signals: on SIGTERM or SIGINT it stops accepting, waits up to
``shutdown_grace_s`` for in-flight calls, then runs the app's lifespan shutdown,
which stops every instance and the zygote (``Platform.stop``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from wuzhao import heap
from wuzhao.config import Settings
from wuzhao.gateway.app import create_app
from wuzhao.platform import Platform

log = logging.getLogger("wuzhao")


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if settings.insecure_no_sandbox:
        log.warning(
            "RUNNING WITHOUT SANDBOXES (--insecure-no-sandbox): functions run with the server's "
            "privileges and can read everything it can. Never do this with code you do not trust."
        )
    # Large bodies (events read, joined and validated; results) from the heap, not fresh pages.
    heap.keep_warm(max(settings.max_request_bytes, settings.max_response_bytes), copies=4)
    platform = Platform.build(settings)

    def started() -> None:
        # Everything made while starting (modules, routes, caches) lives as long as the
        # server: out of the collector's reach, a full collection no longer walks it
        # and stalls calls in flight for milliseconds.
        gc.collect()
        gc.freeze()
        log.info(
            "wuzhao is serving on http://%s:%s (data dir %s, admin key in %s)",
            settings.host,
            settings.port,
            settings.data_dir,
            settings.data_dir / "admin.key",
        )

    app = create_app(platform, on_started=started)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or 1,
        server_header=False,
        # No proxy is trusted: X-Forwarded-* would only let a caller claim another address.
        proxy_headers=False,
    )
    server = _Server(config)
    server.run()
    if not server.started:
        raise SystemExit(1)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal once its graceful shutdown is over, so the
        # process would end "killed by SIGTERM"; a completed graceful shutdown is
        # a clean exit, status 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield

"""The operator's one HTTP port: the liveness probe and Prometheus' `/metrics`.

kopf's own liveness endpoint serves a single path, so the operator serves both itself, in
its event loop, on the address of `--liveness` (default `http://0.0.0.0:8080/healthz`):
- the `--liveness` path answers `{}` with 200 whenever the event loop answers (as kopf's
  endpoint does for an operator without probe handlers): a wedged loop fails the probe;
- `/metrics` is the Prometheus text format (prometheus-client's default registry, where
  `telemetry` registers the operator's metrics), rendered in a thread.
`--liveness ''` serves nothing (tests and benchmarks that run several operators).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

import rebound_operator.telemetry  # noqa: F401  (registers the operator's metrics)
from rebound_operator.settings import METRICS_PATH, ListenAddress

logger = logging.getLogger("rebound_operator")


async def _probe(_: web.Request) -> web.Response:
    return web.json_response({})


async def _metrics(_: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start(address: ListenAddress) -> web.AppRunner:
    """Listen on `address` (OSError if the port is taken); `runner.cleanup()` stops it."""
    app = web.Application()
    app.add_routes([web.get(address.probe_path, _probe), web.get(METRICS_PATH, _metrics)])
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, address.host, address.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    logger.debug(
        "serving %s and %s on %s:%d",
        address.probe_path,
        METRICS_PATH,
        address.host,
        address.port,
    )
    return runner

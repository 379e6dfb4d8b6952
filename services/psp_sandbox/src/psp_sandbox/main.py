"""The sandbox's app, and the server that serves it: one that can close its port for a while
(the `outage` fault in `refuse` mode), so that Amana's calls are refused at the TCP level."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from amana_common.app import create_app
from amana_common.cli import ApiServer, ServiceEntry
from amana_common.settings import ServiceSettings
from psp_sandbox.api import control, psp
from psp_sandbox.settings import SandboxSettings
from psp_sandbox.worker import worker_components

log = logging.getLogger("psp_sandbox.server")


def create_psp_sandbox_app(settings: SandboxSettings | None = None) -> FastAPI:
    return create_app(
        settings or SandboxSettings(),
        [psp, control],
        title="Amana PSP sandbox",
        description="A simulated payment service provider: accepts batches like a PSP API, "
        "settles them after a delay with a seeded failure rate and reason mix, posts signed "
        "settlement webhooks, and injects faults on request. Never for real money.",
    )


class PortControlledServer:
    """Serves the app like `ApiServer`, and closes the listening port for `refuse_for(s)`
    seconds: requests in flight are answered, new connections are refused, then the port
    opens again (the app's lifespan runs again). Ends when `stop` is set."""

    def __init__(self, app: FastAPI, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings
        self._closing = asyncio.Event()
        self._closed_for_s = 0.0
        app.state.port_control = self

    def refuse_for(self, seconds: float) -> None:
        self._closed_for_s = seconds
        self._closing.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not await self._serve_until_closed(stop):
                    return
                log.warning(
                    "outage: port %s closed for %.0f s", self.settings.port, self._closed_for_s
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._closed_for_s)
                log.warning("outage over: port %s open again", self.settings.port)
        finally:
            stop.set()

    async def _serve_until_closed(self, stop: asyncio.Event) -> bool:
        """Serves until `stop` or a refusal; answers whether the port is to open again."""
        self._closing.clear()
        period = asyncio.Event()
        serving = asyncio.create_task(ApiServer(self.app, self.settings).run(period))
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._closing.wait())]
        await asyncio.wait([serving, *waits], return_when=asyncio.FIRST_COMPLETED)
        period.set()
        await serving
        for wait in waits:
            wait.cancel()
        return self._closing.is_set() and not stop.is_set()


ENTRY = ServiceEntry(
    name="psp_sandbox",
    settings=SandboxSettings,
    app=create_psp_sandbox_app,
    components=worker_components,
    api_server=PortControlledServer,
)

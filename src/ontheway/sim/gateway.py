"""The run's location gateway: every online driver's fix, batched, over a few ops sockets.

A driver's app keeps its own socket for offers and answers; its positions go the way a gateway
in front of many apps sends them: ``{"updates": [...]}`` on ``/ws/driver`` with an ops token
(limited to the run's regions), ``BATCH`` fixes per message instead of one message per driver.
That costs the simulator one ``send`` and the API one message per batch rather than per fix,
which is what lets thousands of drivers keep a fix every 4 simulated seconds (see the README's
scale run). A driver whose app is offline (vanished, on a break) is left out, as before. The
API answers only errors (no ``seq`` is sent): they are counted in ``fixes_rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ontheway.auth import Role
from ontheway.sim.context import SimContext

SOCKETS = 4
BATCH = 500  # fixes per message (the API takes up to 1,000)


class Gateway:
    """A few ops sockets on ``/ws/driver`` that carry every driver's fixes."""

    def __init__(self, ctx: SimContext, regions: list[str], sockets: int = SOCKETS) -> None:
        self.ctx = ctx
        self.token = ctx.token(Role.OPS, "ops_sim", regions=regions)
        self.sockets: list[ClientConnection | None] = [None] * sockets
        self._readers: set[asyncio.Task[None]] = set()

    async def send(self, fixes: list[dict[str, Any]]) -> int:
        """Send ``fixes`` in batches spread over the sockets; how many went out."""
        batches = [fixes[i : i + BATCH] for i in range(0, len(fixes), BATCH)]
        lanes = [batches[i :: len(self.sockets)] for i in range(len(self.sockets))]
        sent = await asyncio.gather(*(self._send_lane(i, lane) for i, lane in enumerate(lanes)))
        return sum(sent)

    async def _send_lane(self, index: int, batches: list[list[dict[str, Any]]]) -> int:
        sent = 0
        for batch in batches:
            ws = self.sockets[index] or await self._open(index)
            if ws is None:
                break
            try:
                await ws.send(json.dumps({"updates": batch}))
            except WebSocketException:
                self.sockets[index] = None  # opened again for the next batch or round
                continue
            sent += len(batch)
        return sent

    async def _open(self, index: int) -> ClientConnection | None:
        try:
            ws = await connect(
                self.ctx.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
                compression=None, proxy=None, open_timeout=30,
            )  # fmt: skip
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.ctx.note(f"gateway socket {index}: {exc!r}")
            return None
        self.sockets[index] = ws
        reader = asyncio.create_task(self._read(ws))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return ws

    async def _read(self, ws: ClientConnection) -> None:
        """Count the fixes the API refused (stale ones are not errors)."""
        with contextlib.suppress(WebSocketException):
            async for text in ws:
                message = json.loads(text)
                if message.get("type") == "error":
                    self.ctx.record.fixes_rejected += 1
                    if self.ctx.record.fixes_rejected <= 5:
                        self.ctx.note(f"gateway: {message.get('error')}")

    async def close(self) -> None:
        """Close every socket and stop reading."""
        for index, ws in enumerate(self.sockets):
            self.sockets[index] = None
            if ws is not None:
                with contextlib.suppress(WebSocketException, OSError):
                    await ws.close()
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

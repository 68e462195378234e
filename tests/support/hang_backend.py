"""A test backend that hangs forever on its first issue, then signs with the internal CA.

Used to kill a process between "persist" and "issue": the first call writes a marker
file and blocks; every later call (after the marker exists) delegates to a real internal
CA built from the same directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from ca_backends.base import BackendConfig, BackendContext
from ca_backends.internal import InternalCaConfig, build_internal_ca
from ca_backends.registry import register


class HangOnceConfig(BackendConfig):
    type: Literal["test-hang-once"]
    marker: str
    directory: str = "ca"


class HangOnce:
    def __init__(self, name: str, config: HangOnceConfig, context: BackendContext) -> None:
        self.name = name
        self._marker = Path(config.marker)
        self._inner = build_internal_ca(name, InternalCaConfig(type="internal",
                                                               directory=config.directory),
                                        context)

    async def issue(self, request: Any, decision: Any) -> Any:
        if not self._marker.exists():
            self._marker.write_text("issuing\n")
            await asyncio.sleep(3600)
        return await self._inner.issue(request, decision)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)


register("test-hang-once", HangOnceConfig, lambda n, c, ctx: HangOnce(n, c, ctx))

"""Build the configured CA backends by type name and hold them for the process."""

from __future__ import annotations

from pathlib import Path

from ca_backends.base import BackendContext, CaBackend, Health
from ca_backends.registry import registered
from gateway.clock import Clock
from gateway.config import GatehouseConfig
from gateway.errors import ErrorKind, GatewayError


class Backends:
    """The process's CA backends, by configured name."""

    def __init__(self, backends: dict[str, CaBackend]) -> None:
        self._backends = backends

    @classmethod
    def build(cls, config: GatehouseConfig, data_dir: Path, clock: Clock) -> Backends:
        context = BackendContext(data_dir=str(data_dir),
                                 public_http_url=config.public_http_url(), clock=clock)
        types = registered()
        built: dict[str, CaBackend] = {}
        for name, entry in config.backends.items():
            built[name] = types[entry.type].factory(name, entry, context)
        return cls(built)

    def get(self, name: str) -> CaBackend:
        try:
            return self._backends[name]
        except KeyError:
            raise GatewayError(ErrorKind.INTERNAL, f"backend {name!r} is not configured") from None

    def names(self) -> list[str]:
        return list(self._backends)

    def items(self) -> list[tuple[str, CaBackend]]:
        return list(self._backends.items())

    async def health(self) -> dict[str, Health]:
        out: dict[str, Health] = {}
        for name, backend in self._backends.items():
            try:
                out[name] = await backend.health()
            except GatewayError as exc:
                out[name] = Health(False, exc.detail)
            except OSError as exc:
                out[name] = Health(False, f"unreachable: {exc.strerror or exc}")
        return out

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()

"""A test backend with a bug: it raises RuntimeError for CSRs with a marker CN.

Every request's first attempt answers BackendUnavailable, so the request is stored and
left to the retry worker; on later attempts a CSR whose CN is ``explode_cn`` makes the
backend raise an unexpected RuntimeError (a backend bug), and any other CSR is signed by
a real internal CA built from the same directory.  Used to prove that one such request
fails alone while the retries of the others go on.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from cryptography.x509.oid import NameOID

from ca_backends.base import BackendConfig, BackendContext, BackendUnavailable
from ca_backends.internal import InternalCaConfig, build_internal_ca
from ca_backends.registry import register


class ExplodeConfig(BackendConfig):
    type: Literal["test-explode"]
    explode_cn: str
    directory: str = "ca"


class Explode:
    def __init__(self, name: str, config: ExplodeConfig, context: BackendContext) -> None:
        self.name = name
        self._explode_cn = config.explode_cn
        self._seen: set[str] = set()
        self._inner = build_internal_ca(name, InternalCaConfig(type="internal",
                                                               directory=config.directory),
                                        context)

    async def issue(self, request: Any, decision: Any) -> Any:
        digest = hashlib.sha256(request.csr_der).hexdigest()
        if digest not in self._seen:
            self._seen.add(digest)
            raise BackendUnavailable("test-explode: first attempt, try again", retry_after=1)
        names = request.csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if names and names[0].value == self._explode_cn:
            raise RuntimeError("test-explode: a backend bug")
        return await self._inner.issue(request, decision)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)


register("test-explode", ExplodeConfig, lambda n, c, ctx: Explode(n, c, ctx))

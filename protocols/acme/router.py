"""ACME routes (RFC 8555 §7.1): the directory per profile and every resource under it.

``/acme/directory`` is the default profile's directory; ``/acme/<profile>/directory``
any other profile's.  Every response carries a fresh Replay-Nonce and the index Link;
errors are problem documents (``protocols.acme.problems``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.errors import GatewayError
from gateway.runtime import Gateway
from protocols.acme import accounts, finalize, orders, renewal, revoke
from protocols.acme.challenges import Validator, respond
from protocols.acme.problems import AcmeProblem, from_gateway_error
from protocols.acme.service import AcmeService, Directory, Reply, Signed

log = logging.getLogger("gatehouse.acme")

Action = Callable[[Directory, Signed], Reply | Awaitable[Reply]]


def _response(reply: Reply, directory_url: str | None, nonce: str | None) -> Response:
    headers = {"Cache-Control": "no-store"}
    if nonce:
        headers["Replay-Nonce"] = nonce
    if reply.location:
        headers["Location"] = reply.location
    if reply.retry_after is not None:
        headers["Retry-After"] = str(reply.retry_after)
    links = list(reply.links)
    if directory_url:
        links.append(f'<{directory_url}>;rel="index"')
    response_headers = list(headers.items()) + [("Link", link) for link in links]
    if reply.body is None:
        content = b""
    elif isinstance(reply.body, bytes):
        content = reply.body
    else:
        content = json.dumps(reply.body, separators=(",", ":")).encode()
    response = Response(content, status_code=reply.status, media_type=reply.content_type)
    for name, value in response_headers:
        response.headers.append(name, value)
    return response


def _problem(problem: AcmeProblem, directory_url: str | None, nonce: str | None) -> Response:
    reply = Reply(problem.to_json(), problem.status, retry_after=problem.retry_after,
                  content_type="application/problem+json",
                  location=problem.headers.get("Location"))
    return _response(reply, directory_url, nonce)


def mount(app: FastAPI, gateway: Gateway) -> None:
    """Add the ACME routes and start the validation sweep on the running loop."""
    service = AcmeService(gateway)
    validator = Validator(service)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        gateway._tasks.append(loop.create_task(validator.sweep_forever(), name="acme-validation"))

    def fresh_nonce() -> str | None:
        try:
            return service.new_nonce()
        except GatewayError:
            return None

    async def signed_post(request: Request, profile: str, action: Action, *,
                          use_jwk: bool = False, either: bool = False) -> Response:
        nonce: str | None = None
        directory_url: str | None = None
        try:
            directory = service.directory(request, profile)
            directory_url = directory.directory_url
            signed = await service.authenticate(request, directory, use_jwk=use_jwk, either=either)
            nonce = signed.nonce
            result = action(directory, signed)
            reply = await result if inspect.isawaitable(result) else result
            return _response(reply, directory_url, nonce)
        except AcmeProblem as problem:
            return _problem(problem, directory_url, nonce or fresh_nonce())
        except GatewayError as exc:
            return _problem(from_gateway_error(exc), directory_url, nonce or fresh_nonce())

    async def directory_of(request: Request, profile: str) -> Response:
        try:
            directory = service.directory(request, profile)
        except AcmeProblem as problem:
            return _problem(problem, None, fresh_nonce())
        settings = directory.settings
        meta: dict[str, Any] = {"externalAccountRequired": settings.eab_required,
                                "profiles": orders.offered_profiles(service, directory)}
        if settings.terms_of_service:
            meta["termsOfService"] = settings.terms_of_service
        if settings.website:
            meta["website"] = settings.website
        if settings.caa_identities:
            meta["caaIdentities"] = list(settings.caa_identities)
        body: dict[str, Any] = {name: directory.url(path) for name, path in (
            ("newNonce", "new-nonce"), ("newAccount", "new-account"), ("newOrder", "new-order"),
            ("revokeCert", "revoke-cert"), ("keyChange", "key-change"),
            ("renewalInfo", "renewal-info"))}
        body["meta"] = meta
        return _response(Reply(body), None, fresh_nonce())

    @app.get("/acme/directory", include_in_schema=False)
    async def default_directory(request: Request) -> Response:
        return await directory_of(request, gateway.config.default_profile)

    @app.get("/acme/{profile}/directory", include_in_schema=False)
    async def profile_directory(request: Request, profile: str) -> Response:
        return await directory_of(request, profile)

    @app.api_route("/acme/{profile}/new-nonce", methods=["GET", "HEAD"], include_in_schema=False)
    async def new_nonce(request: Request, profile: str) -> Response:
        try:
            directory = service.directory(request, profile)
        except AcmeProblem as problem:
            return _problem(problem, None, fresh_nonce())
        status = 200 if request.method == "HEAD" else 204  # RFC 8555 §7.2
        return _response(Reply(None, status), directory.directory_url, service.new_nonce())

    @app.post("/acme/{profile}/new-account", include_in_schema=False)
    async def new_account(request: Request, profile: str) -> Response:
        return await signed_post(request, profile, lambda d, s: accounts.new_account(service, d, s),
                                 use_jwk=True)

    @app.post("/acme/{profile}/acct/{account_id}", include_in_schema=False)
    async def account(request: Request, profile: str, account_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: accounts.update_account(service, d, s, account_id))

    @app.post("/acme/{profile}/acct/{account_id}/orders", include_in_schema=False)
    async def account_orders(request: Request, profile: str, account_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: orders.list_orders(service, d, s, account_id))

    @app.post("/acme/{profile}/key-change", include_in_schema=False)
    async def key_change(request: Request, profile: str) -> Response:
        return await signed_post(request, profile, lambda d, s: accounts.key_change(service, d, s))

    @app.post("/acme/{profile}/new-order", include_in_schema=False)
    async def new_order(request: Request, profile: str) -> Response:
        return await signed_post(request, profile, lambda d, s: orders.new_order(service, d, s))

    @app.post("/acme/{profile}/order/{order_id}", include_in_schema=False)
    async def order(request: Request, profile: str, order_id: str) -> Response:
        async def action(d: Directory, s: Signed) -> Reply:
            await finalize.advance(service, order_id)
            return orders.get_order(service, d, s, order_id)
        return await signed_post(request, profile, action)

    @app.post("/acme/{profile}/order/{order_id}/finalize", include_in_schema=False)
    async def finalize_order(request: Request, profile: str, order_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: finalize.finalize(service, d, s, order_id))

    @app.post("/acme/{profile}/authz/{authz_id}", include_in_schema=False)
    async def authz(request: Request, profile: str, authz_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: orders.get_authz(service, d, s, authz_id))

    @app.post("/acme/{profile}/chall/{challenge_id}", include_in_schema=False)
    async def challenge(request: Request, profile: str, challenge_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: respond(service, validator, d, s, challenge_id))

    @app.post("/acme/{profile}/cert/{order_id}", include_in_schema=False)
    async def certificate(request: Request, profile: str, order_id: str) -> Response:
        return await signed_post(request, profile,
                                 lambda d, s: finalize.certificate(service, d, s, order_id))

    @app.post("/acme/{profile}/revoke-cert", include_in_schema=False)
    async def revoke_cert(request: Request, profile: str) -> Response:
        return await signed_post(request, profile, lambda d, s: revoke.revoke_cert(service, d, s),
                                 either=True)

    @app.get("/acme/{profile}/renewal-info/{cert_id}", include_in_schema=False)
    async def renewal_info(request: Request, profile: str, cert_id: str) -> Response:
        try:
            directory = service.directory(request, profile)
            body = renewal.renewal_info(service.state, cert_id, service.now())
        except AcmeProblem as problem:
            return _problem(problem, None, fresh_nonce())
        return _response(Reply(body, retry_after=renewal.RETRY_AFTER), directory.directory_url,
                         fresh_nonce())


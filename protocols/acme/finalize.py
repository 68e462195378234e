"""Finalize (RFC 8555 §7.4) through the enrollment pipeline, and certificate download (§7.4.2).

The order id is the pipeline's transaction id, so asking again (a client polling the
order) resumes the same request: an ADCS-pending or retrying backend keeps the order
``processing`` with Retry-After until the pipeline reaches a final state.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Table, select, update

from gateway.errors import GatewayError
from gateway.model import (
    EnrollmentRequest,
    EnrollmentResult,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
    RequestState,
)
from gateway.pem import load_csr_der
from gateway.store import acme as store
from gateway.store import certificates, requests
from gateway.store.acme_tables import AcmeOrderRow
from gateway.store.tables import certificates_table
from protocols.acme import identifiers as ids
from protocols.acme import renewal
from protocols.acme.jws import b64decode
from protocols.acme.problems import (
    AcmeProblem,
    ProblemType,
    from_gateway_error,
    malformed,
    not_found,
    unauthorized,
)
from protocols.acme.resources import order_json, order_transition
from protocols.acme.service import AcmeService, Directory, Reply, Signed

PEM_CHAIN = "application/pem-certificate-chain"
_ORDERS: Table = AcmeOrderRow.__table__  # type: ignore[assignment]


async def finalize(service: AcmeService, directory: Directory, signed: Signed,
                   order_id: str) -> Reply:
    payload = signed.jws.payload_json()
    account = signed.account
    if account is None:
        raise malformed("finalize must be signed with the account key ('kid')")
    csr_der = b64decode(payload.get("csr"), "csr")
    try:
        csr = load_csr_der(csr_der)
    except GatewayError as exc:
        raise AcmeProblem(ProblemType.BAD_CSR, exc.detail) from None
    if not csr.is_signature_valid:
        raise AcmeProblem(ProblemType.BAD_CSR, "the CSR's signature does not verify")
    now = service.now()
    with service.gateway.db.begin() as connection:
        order = store.fast_order(connection, order_id)
        if order is None:
            raise not_found("order")
        if order.account_id != account.id:
            raise unauthorized("the order belongs to another account")
        states = store.fast_authz_states(connection, order_id)
        change = order_transition(order.status, order.expires, states, now)
        status = change[0] if change else order.status
        if change is not None:
            store.fast_update(connection, "order", order_id, status=change[0], error=change[1],
                              updated_at=now)
    if status != "ready":
        raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"the order is {status}, not ready", 403)
    ordered = [ids.identifier_from_json(i) for i in order.identifiers]
    ids.check_csr_matches(csr, ordered)
    ids.check_csr_subject(csr, ordered)
    replaces = None
    if order.replaces:
        with service.gateway.db.session() as session:
            replaces = renewal.replaced_serial(session, order.replaces, account.id,
                                               order.profile)
    with service.gateway.db.begin() as connection:
        claimed = connection.execute(update(_ORDERS).where(
            _ORDERS.c.id == order_id, _ORDERS.c.status == "ready").values(
            status="processing", updated_at=now))
        if claimed.rowcount != 1:
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, "the order is being finalized", 403)
    profile = order.profile
    not_before, not_after = order.not_before, order.not_after
    request = EnrollmentRequest(
        protocol=Protocol.ACME, operation=Operation.ENROLL, profile=profile, csr=csr,
        csr_der=csr_der,
        principal=Principal(PrincipalKind.ACME_ACCOUNT, account.id,
                            {"account_url": directory.account_url(account.id)}),
        proven_identifiers=tuple(ordered), renewal_of=replaces,
        requested_not_before=not_before, requested_not_after=not_after,
        transaction_id=order_id)
    try:
        result = await service.gateway.enrollment.submit(request)
    except GatewayError as exc:
        problem = from_gateway_error(exc)
        _record(service, order_id, None, problem)
        raise problem from None
    return _order_reply(service, directory, order_id, result)


async def advance(service: AcmeService, order_id: str) -> None:
    """A processing order: ask the pipeline again (drives it when a retry is due)."""
    with service.gateway.db.begin() as connection:
        order = store.fast_order(connection, order_id)
    if order is None or order.status != "processing":
        return
    request_id = order.request_id
    if request_id is None:  # the process died between claiming the order and submitting
        with service.gateway.db.session() as session:
            row = requests.by_transaction(session, Protocol.ACME.value, order_id)
            request_id = row.id if row is not None else None
    if request_id is None:
        _record(service, order_id, None, AcmeProblem(
            ProblemType.SERVER_INTERNAL, "the order was interrupted before it reached the CA; "
            "place a new order", 500))
        return
    try:
        result = await service.gateway.enrollment.resume(request_id)
    except GatewayError as exc:
        _record(service, order_id, None, from_gateway_error(exc))
        return
    _record(service, order_id, result, None)


def _record(service: AcmeService, order_id: str, result: EnrollmentResult | None,
            problem: AcmeProblem | None) -> Any:
    """Store the pipeline's answer on the order; returns the order row as it now is."""
    values: dict[str, Any] = {"updated_at": service.now()}
    if result is not None:
        values["request_id"] = result.request_id
        if result.state is RequestState.ISSUED and result.certificate is not None:
            values["status"] = "valid"
            values["certificate_serial"] = result.certificate.serial
    if problem is not None:
        values["status"] = "invalid"
        values["error"] = problem.to_json()
    with service.gateway.db.begin() as connection:
        store.fast_update(connection, "order", order_id, **values)
        return store.fast_order(connection, order_id), store.fast_authz_states(connection, order_id)


def _order_reply(service: AcmeService, directory: Directory, order_id: str,
                 result: EnrollmentResult) -> Reply:
    order, states = _record(service, order_id, result, None)
    body = order_json(directory, order, [a.id for a in states])
    retry = None if body["status"] == "valid" else max(1, min(result.retry_after or 1, 3600))
    return Reply(body, location=directory.url("order", order_id), retry_after=retry)


def certificate(service: AcmeService, directory: Directory, signed: Signed, order_id: str) -> Reply:
    """RFC 8555 §7.4.2: the end-entity certificate followed by its chain, PEM."""
    if not signed.jws.post_as_get:
        raise malformed("certificates are fetched with POST-as-GET (empty payload)")
    assert signed.account is not None
    with service.gateway.db.begin() as connection:
        order = store.fast_order(connection, order_id)
        if order is None:
            raise not_found("order")
        if order.account_id != signed.account.id:
            raise unauthorized("the order belongs to another account")
        if order.status != "valid" or not order.certificate_serial:
            raise AcmeProblem(ProblemType.MALFORMED, "the order has no certificate", 404)
        row = connection.execute(select(certificates_table.c.der, certificates_table.c.chain_der)
                                 .where(certificates_table.c.serial == order.certificate_serial)
                                 ).first()
        if row is None:
            raise AcmeProblem(ProblemType.MALFORMED, "the certificate is gone", 404)
    ders = [row.der, *certificates.chain_of(row)]  # type: ignore[arg-type]
    pem = b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders)
    return Reply(pem, content_type=PEM_CHAIN)


def order_location(directory: Directory, order_id: str) -> dict[str, Any]:
    return {"Location": directory.url("order", order_id)}

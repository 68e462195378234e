"""Finalize (RFC 8555 §7.4) through the enrollment pipeline, and certificate download (§7.4.2).

The order id is the pipeline's transaction id, so asking again (a client polling the
order) resumes the same request: an ADCS-pending or retrying backend keeps the order
``processing`` with Retry-After until the pipeline reaches a final state.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
from gateway.services.acme_model import OrderState, OrderStatus
from protocols.acme import identifiers as ids
from protocols.acme import renewal
from protocols.acme.jws import b64decode
from protocols.acme.orders import owned_order
from protocols.acme.problems import (
    AcmeProblem,
    ProblemType,
    from_gateway_error,
    malformed,
    not_found,
)
from protocols.acme.resources import order_json, order_transition
from protocols.acme.service import AcmeService, Directory, Reply, Signed, check_owner

PEM_CHAIN = "application/pem-certificate-chain"


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
    state = service.state.order_state(order_id)
    if state is None:
        raise not_found("order")
    order = state.order
    check_owner(order.account_id, account, "order")
    change = order_transition(order.status, order.expires, state.authorizations, now)
    status = change.status if change else order.status
    if change is not None:
        service.state.apply_order_change(order_id, expected=order.status, change=change, now=now)
    if status is not OrderStatus.READY:
        raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"the order is {status}, not ready", 403)
    ordered = [ids.identifier_from_json(dict(i)) for i in order.identifiers]
    ids.check_csr_matches(csr, ordered)
    ids.check_csr_subject(csr, ordered)
    replaces = None
    if order.replaces:
        replaces = renewal.replaced_serial(service.state, order.replaces, account.id,
                                           order.profile)
    if not service.state.claim_for_finalize(order_id, now=now):
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
    order = service.state.order(order_id)
    if order is None or order.status is not OrderStatus.PROCESSING:
        return
    request_id = order.request_id
    if request_id is None:  # the process died between claiming the order and submitting
        request_id = service.state.request_id_for_order(order_id, protocol=Protocol.ACME.value)
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
            problem: AcmeProblem | None) -> OrderState | None:
    """Store the pipeline's answer on the order; returns the order as it now is."""
    now = service.now()
    if problem is not None:
        return service.state.mark_order_invalid(order_id, error=problem.to_json(), now=now)
    assert result is not None
    if result.state is RequestState.ISSUED and result.certificate is not None:
        return service.state.mark_order_valid(order_id, request_id=result.request_id,
                                              certificate_serial=result.certificate.serial,
                                              now=now)
    return service.state.link_order_request(order_id, request_id=result.request_id, now=now)


def _order_reply(service: AcmeService, directory: Directory, order_id: str,
                 result: EnrollmentResult) -> Reply:
    state = _record(service, order_id, result, None)
    if state is None:
        raise not_found("order")
    body = order_json(directory, state.order, [a.id for a in state.authorizations])
    retry = (None if state.order.status is OrderStatus.VALID
             else max(1, min(result.retry_after or 1, 3600)))
    return Reply(body, location=directory.url("order", order_id), retry_after=retry)


def certificate(service: AcmeService, directory: Directory, signed: Signed, order_id: str) -> Reply:
    """RFC 8555 §7.4.2: the end-entity certificate followed by its chain, PEM."""
    if not signed.jws.post_as_get:
        raise malformed("certificates are fetched with POST-as-GET (empty payload)")
    assert signed.account is not None
    order = owned_order(service, order_id, signed.account)
    if order.status is not OrderStatus.VALID or not order.certificate_serial:
        raise AcmeProblem(ProblemType.MALFORMED, "the order has no certificate", 404)
    record = service.state.certificate(order.certificate_serial)
    if record is None:
        raise AcmeProblem(ProblemType.MALFORMED, "the certificate is gone", 404)
    ders = [record.der, *record.chain]
    pem = b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders)
    return Reply(pem, content_type=PEM_CHAIN)


def order_location(directory: Directory, order_id: str) -> dict[str, str]:
    return {"Location": directory.url("order", order_id)}

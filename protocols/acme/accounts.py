"""Accounts (RFC 8555 §7.3): newAccount, EAB (§7.3.4), update, deactivate, keyChange (§7.3.5)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from gateway.auth.eab import EabKey
from gateway.services.acme_model import Account, AccountRefusal, AccountStatus, KeyInUse, NewAccount
from protocols.acme import jws
from protocols.acme.problems import AcmeProblem, ProblemType, malformed, unauthorized
from protocols.acme.resources import account_json
from protocols.acme.service import AcmeService, Directory, Reply, Signed

_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
MAX_CONTACTS = 10


def _contacts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise malformed("'contact' must be a list of URLs")
    if len(value) > MAX_CONTACTS:
        raise AcmeProblem(ProblemType.INVALID_CONTACT, f"at most {MAX_CONTACTS} contacts")
    for contact in value:
        if not contact.startswith("mailto:"):
            raise AcmeProblem(ProblemType.UNSUPPORTED_CONTACT,
                              f"only mailto: contacts are supported, not {contact[:64]!r}")
        address = contact.removeprefix("mailto:")
        local, at, domain = address.partition("@")
        if not at or not local or "." not in domain or "," in address or "?" in address \
                or len(address) > 254 or any(c.isspace() for c in address):
            raise AcmeProblem(ProblemType.INVALID_CONTACT,
                              f"{contact[:64]!r} is not a valid mailto: address")
    return list(value)


def _eab_check(service: AcmeService, directory: Directory, binding: Any,
               account_jwk: dict[str, Any]) -> EabKey:
    """RFC 8555 §7.3.4: a JWS over the account key, MACed with the EAB key."""
    if not isinstance(binding, dict):
        raise malformed("'externalAccountBinding' must be a JWS object")
    parsed = jws.parse(json.dumps(binding).encode(), require_nonce=False,
                       algorithms=tuple(_HMAC))
    if parsed.url != directory.url("new-account"):
        raise unauthorized("the external account binding's 'url' is not newAccount")
    if parsed.kid is None or parsed.nonce is not None:
        raise malformed("the external account binding needs a 'kid' and no 'nonce'")
    inner = jws.json_object(parsed.payload, "the external account binding's payload")
    if jws.thumbprint(inner) != jws.thumbprint(account_jwk):
        raise unauthorized("the external account binding does not bind this account key")
    key = service.state.eab_key(profile=directory.profile, kid=parsed.kid, now=service.now())
    if key is None:
        raise unauthorized("unknown, used or expired external account key id")
    mac = hmac.new(key.key, parsed.signing_input, _HMAC[parsed.alg]).digest()
    if not hmac.compare_digest(mac, parsed.signature):
        raise unauthorized("the external account binding's MAC does not verify")
    return key


def new_account(service: AcmeService, directory: Directory, signed: Signed) -> Reply:
    payload = signed.jws.payload_json()
    jwk = jws.public_jwk(signed.jws.jwk or {})
    thumbprint = jws.thumbprint(jwk)
    now = service.now()
    existing = service.state.account_by_key(directory.profile, thumbprint)
    if existing is not None:
        if existing.status is not AccountStatus.VALID:
            raise unauthorized(f"the account is {existing.status}")
        return Reply(account_json(directory, existing),
                     location=directory.account_url(existing.id))
    if payload.get("onlyReturnExisting") is True:
        raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account for this key")
    contacts = _contacts(payload.get("contact"))
    agreed = payload.get("termsOfServiceAgreed") is True
    if directory.settings.terms_of_service and not agreed:
        raise malformed("you must agree to the terms of service (termsOfServiceAgreed)")
    binding = payload.get("externalAccountBinding")
    key = None
    if binding is not None:
        key = _eab_check(service, directory, binding, jwk)
    elif directory.settings.eab_required:
        raise AcmeProblem(ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
                          "this directory requires an external account binding")
    created = service.state.create_account(
        NewAccount(directory.profile, thumbprint, jwk, tuple(contacts), agreed),
        eab_key=key, now=now)
    if created is AccountRefusal.KEY_IN_USE:
        raise AcmeProblem(ProblemType.MALFORMED, "an account for this key was just created", 409)
    if created is AccountRefusal.EAB_KEY_USED:
        raise unauthorized("the external account key was used concurrently")
    assert isinstance(created, Account)
    return Reply(account_json(directory, created), 201,
                 location=directory.account_url(created.id))


def update_account(service: AcmeService, directory: Directory, signed: Signed,
                   account_id: str) -> Reply:
    """POST to the account URL: read (empty payload), update contact, or deactivate."""
    assert signed.account is not None
    if signed.account.id != account_id:
        raise unauthorized("the account URL does not match the signing account")
    if signed.jws.post_as_get:
        account = service.state.account(account_id)
    else:
        payload = signed.jws.payload_json()
        contact = _contacts(payload["contact"]) if "contact" in payload else None
        status = payload.get("status")
        if status is not None and status != AccountStatus.DEACTIVATED:
            raise malformed("an account's status can only be set to 'deactivated'")
        account = service.state.update_account(  # RFC 8555 §7.3.6
            account_id, contact=contact, deactivate=status is not None)
    assert account is not None
    return Reply(account_json(directory, account), location=directory.account_url(account_id))


def key_change(service: AcmeService, directory: Directory, signed: Signed) -> Reply:
    """RFC 8555 §7.3.5: the inner JWS, signed by the new key, names account and old key."""
    account = signed.account
    if account is None:
        raise malformed("keyChange must be signed with the account key ('kid')")
    inner = jws.parse(signed.jws.payload, require_nonce=False)
    if inner.jwk is None:
        raise malformed("the inner JWS of keyChange must carry the new key ('jwk')")
    if inner.nonce is not None:
        raise malformed("the inner JWS of keyChange must not have a nonce")
    if inner.url != signed.jws.url:
        raise malformed("the inner JWS 'url' differs from the outer one")
    new_key = jws.load_jwk(inner.jwk)
    jws.verify(inner, new_key)
    payload = inner.payload_json()
    if payload.get("account") != directory.account_url(account.id):
        raise unauthorized("keyChange names another account")
    old = payload.get("oldKey")
    if not isinstance(old, dict) or jws.thumbprint(old) != account.thumbprint:
        raise unauthorized("'oldKey' is not the account's current key")
    new_jwk = jws.public_jwk(inner.jwk)
    new_thumbprint = jws.thumbprint(new_jwk)
    changed = service.state.change_account_key(account.id, profile=directory.profile,
                                               jwk=new_jwk, thumbprint=new_thumbprint)
    if isinstance(changed, KeyInUse):
        raise AcmeProblem(ProblemType.MALFORMED, "the new key is already in use", 409,
                          headers={"Location": directory.account_url(changed.holder_id)})
    assert changed is not None
    return Reply(account_json(directory, changed), location=directory.account_url(account.id))

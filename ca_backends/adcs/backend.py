"""The ADCS bridge: Microsoft AD CS through its Web Enrollment pages (``/certsrv/``).

Drives certsrv as deployed clients do (docs/backends.md lists the calls): ``GET /certsrv/``
(credentials), ``certcarc.asp`` (``nRenewals``), ``certnew.p7b?ReqID=CACert`` (chain),
``POST certfnsh.asp`` (``Mode=newreq``), ``certnew.cer?ReqID=N`` (certificate or status).
Web enrollment signs the CSR as sent, under the CA's template (``decision.template`` or
the entry's ``template``), which decides extensions and validity.  So the bridge refuses,
before calling the CA, a CSR whose names differ from the decision or whose requested
extensions go beyond it; the pipeline then checks the certificate the CA returns
(gateway/issuance_check.py) and refuses one outside the decision.

Outcomes: issued → ``IssuedCertificate``; pending (CA manager approval) →
``Pending(request id)``, polled through ``certnew.cer?ReqID=N``; denied or an error page →
``BackendRejected`` with the CA's disposition message; the CA service stopped, HTTP 5xx,
connection failures, refused credentials → ``BackendUnavailable`` (retryable).
Revocation needs the MS-CSRA admin interface, not web enrollment: ``revoke`` raises
``Unsupported``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ca_backends.adcs.auth import AdcsAuthError, SpnegoAuth, read_password
from ca_backends.adcs.config import AdcsConfig, BasicAuth, ClientCertAuth, NtlmAuth
from ca_backends.adcs.pages import (
    PROPERTY_EMPTY,
    Disposition,
    ResultPage,
    order_chain,
    parse_error,
    parse_renewals,
    parse_result,
    read_certificate,
    read_pkcs7,
)
from ca_backends.base import BackendRejected, BackendUnavailable, Health, Unsupported
from ca_backends.common import issued_certificate
from gateway.issuance_check import (
    names_mismatch,
    requested_attribute_problems,
    requested_extension_problems,
)
from gateway.model import Decision, EnrollmentRequest, IssuedCertificate, Pending, RevocationReason

# Some IIS setups answer differently to non-browser agents (the certsrv library notes it).
USER_AGENT = "Mozilla/5.0 (compatible; Gatehouse ADCS bridge)"


class AdcsBackend:
    """A CaBackend that speaks certsrv over HTTPS (httpx)."""

    def __init__(self, name: str, config: AdcsConfig, data_dir: Path,
                 *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = name
        self._config = config
        self._data_dir = data_dir
        self._base = config.url.rstrip("/") + "/certsrv/"
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._chains: dict[int, list[x509.Certificate]] = {}

    def _file(self, value: str) -> str:
        path = Path(value)
        return str(path if path.is_absolute() else self._data_dir / path)

    def _client(self) -> httpx.AsyncClient:
        """Built on first use, so a missing password shows as an unavailable backend."""
        if self._http is not None:
            return self._http
        config = self._config
        context = (ssl.create_default_context(cafile=self._file(config.ca_cert)) if config.ca_cert
                   else ssl.create_default_context())
        auth: httpx.Auth | None = None
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
        if isinstance(config.auth, ClientCertAuth):
            try:
                context.load_cert_chain(self._file(config.auth.client_cert),
                                        self._file(config.auth.client_key))
            except OSError as exc:
                raise AdcsAuthError(f"cannot load the ADCS client certificate: {exc}") from exc
        elif isinstance(config.auth, BasicAuth):
            auth = httpx.BasicAuth(config.auth.username, read_password(config.auth, self._data_dir))
        else:
            # NTLM/Negotiate authenticate a connection: one connection, requests in turn.
            protocol = "ntlm" if isinstance(config.auth, NtlmAuth) else "negotiate"
            service = getattr(config.auth, "service", "HTTP")
            auth = SpnegoAuth(config.auth.username, read_password(config.auth, self._data_dir),
                              protocol=protocol, service=service)
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._http = httpx.AsyncClient(base_url=self._base, verify=context, auth=auth,
                                       timeout=httpx.Timeout(config.timeout, pool=config.timeout * 4),
                                       limits=limits, transport=self._transport,
                                       headers={"User-Agent": USER_AGENT}, follow_redirects=False)
        return self._http

    async def _request(self, method: str, path: str, *, data: dict[str, str] | None = None
                       ) -> httpx.Response:
        try:
            response = await self._client().request(method, path, data=data)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"ADCS at {self._config.url} timed out") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach ADCS at {self._config.url}: "
                                     f"{exc or type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise AdcsAuthError(f"IIS refused the gateway's {self._config.auth.method} credentials "
                                f"(HTTP {response.status_code}) for {path}")
        if response.status_code >= 500 or response.status_code == 429:
            raise BackendUnavailable(f"ADCS answered HTTP {response.status_code} for {path}")
        if response.status_code != 200:
            raise BackendUnavailable(f"ADCS answered HTTP {response.status_code} for {path}: is "
                                     f"Web Enrollment installed at {self._base}?")
        return response

    # -- CaBackend -------------------------------------------------------------------------

    async def issue(self, request: EnrollmentRequest, decision: Decision
                    ) -> IssuedCertificate | Pending:
        """Submit the CSR under the template (certfnsh.asp ``Mode=newreq``)."""
        template = decision.template or self._config.template
        if not template:
            raise BackendRejected(f"backend {self.name!r} has no certificate template: set "
                                  f"'template' or the profile's 'template'")
        refused = (names_mismatch(request.csr, decision, signer="the ADCS bridge")
                   or "; ".join(requested_attribute_problems(request.csr))
                   or "; ".join(requested_extension_problems(
                       request.csr, decision.key_usage, decision.extended_key_usage)))
        if refused:  # ADCS would sign the CSR as it stands
            raise BackendRejected(refused)
        attributes = "\r\n".join([f"CertificateTemplate:{template}", *self._config.attributes])
        form = {
            "Mode": "newreq",
            "CertRequest": request.csr.public_bytes(Encoding.PEM).decode("ascii"),
            "CertAttrib": attributes + "\r\n",
            "FriendlyType": "Saved-Request Certificate",
            "TargetStoreFlags": "0",
            "SaveCert": "yes",
        }
        page = parse_result((await self._request("POST", "certfnsh.asp", data=form)).text)
        return await self._outcome(page)

    async def _outcome(self, page: ResultPage) -> IssuedCertificate | Pending:
        if page.disposition is Disposition.ISSUED and page.request_id is not None:
            return await self._fetch(page.request_id)
        if page.disposition is Disposition.PENDING and page.request_id is not None:
            return Pending(str(page.request_id), retry_after=self._config.poll_interval)
        if page.disposition is Disposition.DENIED:
            raise BackendRejected(f"ADCS denied the request: {page.message}")
        if page.disposition is Disposition.ERROR and not page.transient:
            raise BackendRejected(f"ADCS could not process the request: "
                                  f"{page.message or page.last_status_text}")
        if page.transient:
            raise BackendUnavailable(f"the CA service is not available: {page.last_status_text}")
        raise BackendUnavailable("ADCS answered a page the bridge does not recognise")

    async def _fetch(self, request_id: int) -> IssuedCertificate | Pending:
        """``certnew.cer?ReqID=N&Enc=b64``: the certificate, or an HTML status page."""
        response = await self._request("GET", f"certnew.cer?ReqID={request_id}&Enc=b64")
        if not response.headers.get("Content-Type", "").startswith("application/pkix-cert"):
            status = parse_error(response.text)
            if status.disposition is Disposition.PENDING:
                return Pending(str(request_id), retry_after=self._config.poll_interval)
            if status.disposition is Disposition.DENIED:
                raise BackendRejected(f"ADCS denied request {request_id}: {status.message}")
            if status.last_status == PROPERTY_EMPTY:
                raise BackendRejected(f"ADCS has no request {request_id} "
                                      f"({status.last_status_text})")
            if status.transient or status.disposition is Disposition.UNKNOWN:
                raise BackendUnavailable(f"ADCS did not return request {request_id}'s "
                                         f"certificate: {status.last_status_text or 'no detail'}")
            raise BackendRejected(f"ADCS request {request_id}: "
                                  f"{status.message or status.last_status_text}")
        try:
            leaf = read_certificate(response.content)
        except ValueError as exc:
            raise BackendUnavailable(f"ADCS request {request_id}: unreadable certificate") from exc
        return issued_certificate(leaf, await self._chain_for(leaf), backend=self.name,
                                  backend_ref=str(request_id))

    async def _chain_for(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        """The chain of the CA certificate (of any renewal) that signed ``leaf``."""
        newest = await self._renewals()
        for renewal in range(newest, -1, -1):
            chain = await self._chain(renewal)
            if chain and chain[0].subject == leaf.issuer:
                try:
                    leaf.verify_directly_issued_by(chain[0])
                except (ValueError, TypeError, InvalidSignature):
                    continue  # an older CA certificate with the same name
                return chain
        raise BackendUnavailable("no CA certificate of this ADCS signed the issued certificate")

    async def _renewals(self) -> int:
        try:
            return parse_renewals((await self._request("GET", "certcarc.asp")).text)
        except ValueError as exc:
            raise BackendUnavailable("certcarc.asp has no nRenewals: not a certsrv page") from exc

    async def _chain(self, renewal: int) -> list[x509.Certificate]:
        if renewal not in self._chains:
            response = await self._request("GET", f"certnew.p7b?ReqID=CACert&Renewal={renewal}"
                                                  f"&Enc=b64")
            try:
                self._chains[renewal] = order_chain(read_pkcs7(response.content))
            except ValueError as exc:
                raise BackendUnavailable("ADCS answered an unreadable CA chain") from exc
        return self._chains[renewal]

    async def poll(self, backend_ref: str) -> IssuedCertificate | Pending:
        """Ask about a pending request: ``certnew.cer?ReqID=N`` (RFC-less certsrv status)."""
        if not backend_ref.isdigit():
            raise BackendRejected(f"{backend_ref!r} is not an ADCS request id")
        return await self._fetch(int(backend_ref))

    async def revoke(self, serial: str, reason: RevocationReason) -> None:
        raise Unsupported(
            f"ADCS web enrollment cannot revoke: an operator must revoke serial {serial} on the "
            f"CA (certutil -revoke {serial} {reason.code}, or the Certification Authority console)")

    async def ca_chain(self) -> list[x509.Certificate]:
        """The newest CA certificate's chain (issuing CA first, root last)."""
        return list(await self._chain(await self._renewals()))

    async def crl(self) -> bytes | None:
        """The newest CA certificate's base CRL (``certcrl.crl?Type=base``), DER."""
        renewal = await self._renewals()
        response = await self._request("GET", f"certcrl.crl?Type=base&Renewal={renewal}&Enc=bin")
        try:
            x509.load_der_x509_crl(response.content)
        except ValueError as exc:
            raise BackendUnavailable("ADCS answered an unreadable CRL") from exc
        return response.content

    async def health(self) -> Health:
        """``GET /certsrv/``: 200 means the site is up and the credentials work."""
        try:
            await self._request("GET", "")
        except BackendUnavailable as exc:
            return Health(False, exc.detail)
        return Health(True, f"certsrv at {self._base} accepts the {self._config.auth.method} "
                            f"credentials")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


__all__ = ["AdcsBackend"]

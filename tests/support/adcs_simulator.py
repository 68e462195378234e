"""A certsrv (ADCS Web Enrollment) simulator: HTTPS, IIS headers, real page wording.

Reproduces what clients see of ``/certsrv/`` (docs/backends.md has the wire facts):
``GET /certsrv/``; ``certcarc.asp`` with ``var nRenewals=N;``; ``certnew.cer`` and
``certnew.p7b`` for CA certificates (``ReqID=CACert&Renewal=N``) and issued ones
(``ReqID=N``), ``Enc=bin|b64`` (b64 PKCS#7 armoured as CERTIFICATE, the known quirk);
``certcrl.crl``; ``POST certfnsh.asp`` (``Mode=newreq`` and ``chkpnd``) answering the
issued, pending, denied and error pages; for a request not issued, ``certnew.cer`` answers
the error page with its disposition message and LastStatus.

Templates: ``WebServer`` issues (1 year), ``ManagerApproval`` waits for ``approve``/``deny``,
``DeniedTemplate`` is refused by the policy module; any other name is not supported.
Authentication (one scheme per instance, like an IIS site): ``basic``, ``ntlm`` or
``negotiate`` (pyspnego acceptor, NTLM credentials from a file named by ``NTLM_USER_FILE``,
channel bindings required: Extended Protection), or ``cert`` (TLS client certificate
issued by the simulator's root).  NTLM/Negotiate authenticate the keep-alive connection.

Standalone: ``python -m tests.support.adcs_simulator --help``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import html
import ipaddress
import os
import re
import secrets
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import spnego
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
# What ``AdcsSimulator.tamper`` may hold: ways a CA can issue beyond the request.
TAMPERING = ("extra-san", "ca", "key-cert-sign", "any-eku", "sid", "duplicate-extension")
# szOID_NTDS_CA_SECURITY_EXT: [0] otherName-like SEQUENCE {OID 311.25.2.1, [0] OCTET STRING SID}
_SID_VALUE = bytes.fromhex("3040a03e060a2b060104018237190201a030042e") + b"S-1-5-21-1-2-3-500".ljust(46, b"0")
TEMPLATES = {"WebServer": "issue", "ManagerApproval": "pending", "DeniedTemplate": "deny"}
CA_NAME = "CORP-ISSUING-CA"
HEADER = ("<HTML>\r\n<Head>\r\n\t<Meta HTTP-Equiv=\"Content-Type\" Content=\"text/html; "
          "charset=UTF-8\">\r\n\t<Title>Microsoft Active Directory Certificate Services</Title>"
          "\r\n</Head>\r\n<Body BgColor=#FFFFFF><Font ID=locPageFont Face=\"Arial\">\r\n"
          "<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080><TR><TD>"
          "<Font Color=#FFFFFF><LocID ID=locMSCertSrv><Font Face=\"Arial\" Size=-1><B><I>"
          "Microsoft</I></B> Active Directory Certificate Services &nbsp;--&nbsp; "
          f"{CA_NAME} &nbsp;</Font></LocID></Font></TD><TD ID=locHomeAlign Align=Right>"
          "<A Href=\"/certsrv\"><Font Color=#FFFFFF><LocID ID=locHomeLink><Font Face=\"Arial\" "
          "Size=-1><B>Home</B></Font></LocID></Font></A></TD></TR></Table>\r\n")
FOOTER = "\r\n</Font>\r\n</Body>\r\n</HTML>\r\n"
LAST_STATUS = {
    "ok": "The operation completed successfully. 0x0 (WIN32: 0 ERROR_SUCCESS)",
    "denied": "The request was denied by a certificate manager or CA administrator. "
              "0x80094014 (-2146877420 CERTSRV_E_ADMIN_DENIED_REQUEST)",
    "empty": "The requested property value is empty. 0x80094004 (-2146877436 "
             "CERTSRV_E_PROPERTY_EMPTY)",
    "badtag": "ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)",
}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "corp"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _with_duplicated_extension(certificate: x509.Certificate,
                               key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """``certificate`` with its last extension twice, re-signed (RFC 5280 §4.2 forbids
    it; cryptography refuses to build one and raises DuplicateExtension reading one)."""
    from asn1crypto import x509 as asn1_x509

    cert = asn1_x509.Certificate.load(certificate.public_bytes(DER))
    tbs = cert["tbs_certificate"]
    extensions = list(tbs["extensions"])
    tbs["extensions"] = asn1_x509.Extensions([*extensions, extensions[-1]])
    cert["signature_value"] = key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_certificate(cert.dump(force=True))


def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey, days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))


def b64_crlf(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return ("\r\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\r\n").encode()


@dataclass
class SimRequest:
    id: int
    csr_der: bytes | None
    template: str
    disposition: int  # 2 denied, 3 issued, 5 pending, 1 error
    message: str
    requester: str
    certificate: x509.Certificate | None = None
    attributes: dict[str, str] = field(default_factory=dict)


class AdcsSimulator:
    """The CA, its templates and requests, and the HTTPS server that fronts them."""

    def __init__(self, workdir: Path, *, auth: str = "basic", username: str = "CORP\\gatehouse",
                 password: str | None = None, port: int = 0) -> None:
        if auth not in ("basic", "ntlm", "negotiate", "cert"):
            raise ValueError(f"unknown auth scheme {auth!r}")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.port = port
        self.requests: dict[int, SimRequest] = {}
        self.next_id = 41
        self.down = False  # answer 503 like IIS when the CA service is stopped
        # A misconfigured or compromised CA, to prove the gateway checks what comes back:
        # names of TAMPERING applied to every certificate signed from now on.
        self.tamper: set[str] = set()
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, form) log
        self.connections: set[socket.socket] = set()
        self._root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _ca(_name("CORP-ROOT-CA"), self._root_key, _name("CORP-ROOT-CA"),
                        self._root_key, 3650)
        self.issuers: list[tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = []
        self.renew_ca()
        self.root_pem.write_bytes(self.root.public_bytes(PEM))
        self._write_tls()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- files ------------------------------------------------------------------------------

    @property
    def root_pem(self) -> Path:
        """Trust anchor: for the TLS certificate and for every certificate the CA issues."""
        return self.workdir / "adcs-root.pem"

    @property
    def client_cert(self) -> Path:
        return self.workdir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.workdir / "client.key"

    @property
    def ntlm_user_file(self) -> Path:
        return self.workdir / "ntlm-users"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def renew_ca(self) -> None:
        """A CA certificate renewal with a new key (nRenewals grows; new issuance uses it)."""
        key = ec.generate_private_key(ec.SECP256R1())
        self.issuers.append((_ca(_name(CA_NAME), key, self.root.subject, self._root_key, 1825), key))

    def _write_tls(self) -> None:
        cert, key = self.issuers[0]
        for name, cn, eku, sans in (
                ("tls", "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                 [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                ("client", "gatehouse-adcs-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])):
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            builder = self._leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
                                 leaf_key.public_key(), sans, [eku], 30)
            leaf = builder.sign(key, hashes.SHA256())
            (self.workdir / f"{name}.pem").write_bytes(leaf.public_bytes(PEM) + cert.public_bytes(PEM))
            (self.workdir / f"{name}.key").write_bytes(leaf_key.private_bytes(
                PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.ntlm_user_file.write_text(f"{self.username.replace(chr(92), ':', 1)}:{self.password}\n"
                                       if "\\" in self.username else f":{self.username}:{self.password}\n")

    def _leaf(self, subject: x509.Name, public_key: Any, sans: list[x509.GeneralName],
              ekus: list[x509.ObjectIdentifier], days: int) -> x509.CertificateBuilder:
        issuer = self.issuers[-1][0]
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=10))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.issuers[-1][1].public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder

    # -- the CA -------------------------------------------------------------------------------

    def submit(self, csr_text: str, attributes: dict[str, str], requester: str) -> SimRequest:
        with self.lock:
            req_id = self.next_id
            self.next_id += 1
            template = attributes.get("certificatetemplate", "")
            try:
                csr = _load_csr(csr_text)
            except ValueError:
                request = SimRequest(req_id, None, template, 1, "Error Parsing Request  "
                                     + LAST_STATUS["badtag"], requester, attributes=attributes)
                self.requests[req_id] = request
                return request
            der = csr.public_bytes(DER)
            rule = TEMPLATES.get(template)
            if not template:
                request = SimRequest(req_id, der, template, 2, "Denied by Policy Module  0x80094801, "
                                     "The request contains no certificate template information.",
                                     requester)
            elif rule is None:
                request = SimRequest(req_id, der, template, 2, "Denied by Policy Module  0x80094800, "
                                     "The request was for a certificate template that is not "
                                     "supported by the Active Directory Certificate Services "
                                     f"policy: {template}.", requester)
            elif rule == "deny":
                request = SimRequest(req_id, der, template, 2, "Denied by Policy Module  0x80094012, "
                                     "The permissions on the certificate template do not allow the "
                                     "current user to enroll for this type of certificate.",
                                     requester)
            elif rule == "pending":
                request = SimRequest(req_id, der, template, 5, "Taken Under Submission", requester)
            else:
                request = SimRequest(req_id, der, template, 3, "Issued", requester)
                request.certificate = self._sign(der)
            request.attributes = attributes
            self.requests[req_id] = request
            return request

    def _sign(self, csr_der: bytes) -> x509.Certificate:
        csr = x509.load_der_x509_csr(csr_der)
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        ekus = [ExtendedKeyUsageOID.SERVER_AUTH]
        if "any-eku" in self.tamper:
            ekus.append(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
        if "extra-san" in self.tamper:
            sans.append(x509.DNSName("admin.corp.example"))
        builder = self._leaf(csr.subject, csr.public_key(), sans, ekus, 365)
        if "ca" in self.tamper:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                            critical=True)
        if "key-cert-sign" in self.tamper:
            builder = builder.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True)
        if "sid" in self.tamper:
            builder = builder.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2"), _SID_VALUE), critical=False)
        certificate = builder.sign(self.issuers[-1][1], hashes.SHA256())
        if "duplicate-extension" in self.tamper:
            certificate = _with_duplicated_extension(certificate, self.issuers[-1][1])
        return certificate

    def approve(self, req_id: int) -> None:
        """What a CA manager's "Issue" does to a pending request (certutil -resubmit)."""
        with self.lock:
            request = self.requests[req_id]
            assert request.disposition == 5 and request.csr_der is not None
            request.certificate = self._sign(request.csr_der)
            request.disposition, request.message = 3, "Resubmitted by CORP\\pkiadmin"

    def deny(self, req_id: int, by: str = "CORP\\pkiadmin") -> None:
        with self.lock:
            request = self.requests[req_id]
            assert request.disposition == 5
            request.disposition, request.message = 2, f"Denied by {by}"

    def issuer_of(self, certificate: x509.Certificate) -> x509.Certificate:
        for issuer, _ in self.issuers:
            try:
                certificate.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return issuer
        raise LookupError("no issuer")

    def crl_der(self, renewal: int) -> bytes:
        issuer, key = self.issuers[renewal]
        now = dt.datetime.now(dt.UTC)
        return (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
                .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=7))
                .sign(key, hashes.SHA256()).public_bytes(DER))

    # -- server ---------------------------------------------------------------------------------

    def start(self) -> AdcsSimulator:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.workdir / "tls.pem", self.workdir / "tls.key")
        context.load_verify_locations(cafile=str(self.root_pem))
        context.load_verify_locations(cadata=self.issuers[0][0].public_bytes(PEM).decode())
        context.verify_mode = ssl.CERT_OPTIONAL  # IIS "accept" client certificates
        os.environ["NTLM_USER_FILE"] = str(self.ntlm_user_file)  # read by pyspnego's acceptor
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.simulator = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="adcs-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and open connections; keep the CA and its requests."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    def tls_server_end_point(self) -> bytes:
        """RFC 5929 §4.1 channel binding of the TLS certificate (SHA-256 for SHA-256 certs)."""
        pem = (self.workdir / "tls.pem").read_bytes()
        return hashlib.sha256(x509.load_pem_x509_certificates(pem)[0].public_bytes(DER)).digest()


def _load_csr(text: str) -> x509.CertificateSigningRequest:
    body = re.sub(r"-----(BEGIN|END) [A-Z ]+-----", "", text)
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except ValueError as exc:
        raise ValueError("not base64") from exc
    return x509.load_der_x509_csr(der)


# -- pages --------------------------------------------------------------------------------------


def issued_page(req_id: int) -> str:
    return (HEADER + "<P ID=locPageTitle> <B> Certificate Issued </B>\r\n"
            "<P ID=locInfo> The certificate you requested was issued to you.</P>\r\n<P>"
            f"<LocID ID=locDownloadCert1>Download certificate: </LocID><A Href=\"certnew.cer?ReqID="
            f"{req_id}&amp;Enc=bin\">DER Encoded</A> or <A Href=\"certnew.cer?ReqID={req_id}&amp;"
            f"Enc=b64\">Base 64 encoded</A><BR>\r\nDownload certificate chain: <A Href=\"certnew.p7b?"
            f"ReqID={req_id}&amp;Enc=bin\">DER Encoded</A> or <A Href=\"certnew.p7b?ReqID={req_id}"
            "&amp;Enc=b64\">Base 64 encoded</A></P>\r\n<Script Language=\"JavaScript\">\r\n"
            f"\tfunction handleGetCert() {{\r\n\t\tlocation=\"certnew.cer?ReqID={req_id}&\"+"
            f"getEncoding();\r\n\t}}\r\n\tfunction handleGetChain() {{\r\n\t\tlocation=\"certnew.p7b?"
            f"ReqID={req_id}&\"+getEncoding();\r\n\t}}\r\n</Script>" + FOOTER)


def pending_page(req_id: int, *, check: bool = False) -> str:
    text = ("<P ID=locInfoChkPnd> Your certificate request is still pending. You must wait for an"
            "\r\nadministrator to issue the certificate you requested. </P>\r\n" if check else
            "<P ID=locInfoNewReq> Your certificate request has been received. However, you must "
            "wait for an\r\nadministrator to issue the certificate you requested. </P>\r\n"
            f"<P ID=locInfoReqID>\r\nYour Request Id is {req_id}.\r\n</P>\r\n")
    return (HEADER + "<P ID=locPageTitle> <B> Certificate Pending </B>\r\n" + text +
            "<P ID=locInstructions> Please return to this web site in a day or two to retrieve "
            "your certificate.</P>" + FOOTER)


def denied_page(req_id: int, message: str) -> str:
    return (HEADER + "<P ID=locPageTitle> <B> Certificate Request Denied </B>\r\n"
            "<P ID=locDenied> Your certificate request was denied. </P>\r\n"
            f"<P ID=locInfoReqIDandReason>\r\nYour Request Id is {req_id}. The disposition message "
            f"is \"{html.escape(message)}\".\r\n</P>\r\n<P ID=locContactAdmin>Contact your "
            "administrator for further information.\r\n</P>" + FOOTER)


def error_page(mode: str, disposition: str, message: str, last_status: str) -> str:
    intro = ("<P ID=locReqFailed> Your request failed. An error occurred while the server was\r\n"
             "processing your request.\r\n</P>\r\n" if mode == "newreq" else "")
    return (HEADER + "<P ID=locPageTitle> <B> Error </B>\r\n" + intro +
            "<P ID=locContactAdmin>Contact your administrator for further assistance.\r\n</P>\r\n"
            "<DL><DD>\r\n\t<DL>\r\n\t<DT ID=locDispLabel><Font Size=-1><B>Disposition:</B></Font>"
            f"</DT><DD>\r\n\t\t{disposition}\r\n\t</DD>\r\n\t<DT ID=locDispMsgLabel><Font Size=-1>"
            "<B>Disposition message:</B></Font></DT><DD>\r\n"
            f"\t\t{html.escape(message) or '(none)'}\r\n\t</DD>\r\n\t<DT ID=locLastStatLabel><Font "
            f"Size=-1><B>LastStatus:</B></Font></DT><DD>\r\n\t\t{last_status}\r\n\t</DD></DL>\r\n"
            "</DD></DL>" + FOOTER)


WELCOME = (HEADER + "<P><LocID ID=locPageTitle> <B> Welcome </B></LocID>\r\n<P>Use this Web site to "
           "request a certificate for your Web browser, e-mail client, or other program.</P>\r\n"
           "<P><A Href=\"certrqus.asp\">Request a certificate</A><BR><A Href=\"certckpn.asp\">View "
           "the status of a pending certificate request</A><BR><A Href=\"certcarc.asp\">Download a "
           "CA certificate, certificate chain, or CRL</A></P>" + FOOTER)


def carc_page(renewals: int) -> str:
    return (HEADER + "<P ID=locPageTitle> <B> Download a CA Certificate, Certificate Chain, or "
            "CRL</B>\r\n<Script Language=\"JavaScript\">\r\n\tvar nRenewals="
            f"{renewals};\r\n\tvar sCAName=\"{CA_NAME}\";\r\n</Script>" + FOOTER)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    authenticated: str | None = None  # the connection's user (NTLM/Negotiate)
    _spnego: Any = None

    def setup(self) -> None:
        super().setup()
        self.sim.connections.add(self.connection)

    def finish(self) -> None:
        self.sim.connections.discard(self.connection)
        super().finish()

    @property
    def sim(self) -> AdcsSimulator:
        return self.server.simulator  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length else b"")

    def _reply(self, status: int, body: bytes, content_type: str = "text/html",
               headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Powered-By", "ASP.NET")
        self.send_header("Cache-Control", "private")
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _page(self, text: str) -> None:
        cookie = f"ASPSESSIONID{secrets.token_hex(4).upper()}={secrets.token_hex(12).upper()}; secure; path=/"
        self._reply(200, text.encode(), "text/html", [("Set-Cookie", cookie)])

    def _unauthorized(self, challenge: list[str]) -> None:
        body = (b"<!DOCTYPE html><html><head><title>401 - Unauthorized: Access is denied due to "
                b"invalid credentials.</title></head><body><h2>401 - Unauthorized: Access is denied "
                b"due to invalid credentials.</h2></body></html>")
        self._reply(401, body, "text/html", [("WWW-Authenticate", c) for c in challenge])

    def _user(self) -> str | None:
        """Authenticate per the simulator's scheme; None when a 401/403 was answered."""
        sim = self.sim
        header = self.headers.get("Authorization", "")
        if sim.auth == "basic":
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "basic":
                user, _, password = base64.b64decode(value + "==").decode(errors="replace").partition(":")
                if user.lower() == sim.username.lower() and password == sim.password:
                    return user
            self._unauthorized(['Basic realm="127.0.0.1"'])
            return None
        if sim.auth == "cert":
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            if not peer:
                self._reply(403, b"<html><body><h2>403 - Forbidden: Access is denied.</h2><p>"
                            b"HTTP Error 403.7 - Client certificate required</p></body></html>")
                return None
            return str(dict(x[0] for x in peer["subject"]).get("commonName"))
        return self._spnego_user(header)

    def _spnego_user(self, header: str) -> str | None:
        offers = ["Negotiate", "NTLM"] if self.sim.auth == "negotiate" else ["NTLM"]
        scheme, _, value = header.partition(" ")
        if not value or scheme not in offers:
            if self.authenticated and not header:
                return self.authenticated  # IIS: the connection stays authenticated
            self._unauthorized(offers)
            return None
        if self._spnego is None:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + self.sim.tls_server_end_point())
            self._spnego = spnego.server(protocol="negotiate" if scheme == "Negotiate" else "ntlm",
                                         channel_bindings=bindings)
        try:
            out = self._spnego.step(base64.b64decode(value))
        except spnego.exceptions.SpnegoError:
            self._spnego = None
            self._unauthorized(offers)
            return None
        if not self._spnego.complete:
            self._unauthorized([f"{scheme} {base64.b64encode(out or b'').decode()}"])
            return None
        self.authenticated = str(self._spnego.client_principal)
        self._spnego = None
        return self.authenticated

    def _serve(self, body: bytes) -> None:
        sim = self.sim
        url = urlsplit(self.path)
        path = url.path.lower()
        query = {k.lower(): v[-1] for k, v in parse_qs(url.query).items()}
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        sim.seen.append((self.command, url.path, form))
        user = self._user()
        if user is None:
            return
        if sim.down:
            self._reply(503, b"<h2>503 - Service Unavailable</h2>")
            return
        if path == "/certsrv":
            self._reply(301, b"", "text/html", [("Location", "/certsrv/")])
        elif path in ("/certsrv/", "/certsrv/default.asp"):
            self._page(WELCOME)
        elif path == "/certsrv/certcarc.asp":
            self._page(carc_page(len(sim.issuers) - 1))
        elif path == "/certsrv/certnew.cer" and self.command == "GET":
            self._certnew(query, chain=False)
        elif path == "/certsrv/certnew.p7b" and self.command == "GET":
            self._certnew(query, chain=True)
        elif path == "/certsrv/certcrl.crl" and self.command == "GET":
            renewal = _renewal(query, len(sim.issuers))
            self._reply(200, sim.crl_der(renewal), "application/pkix-crl")
        elif path == "/certsrv/certfnsh.asp" and self.command == "POST":
            self._certfnsh(form, user)
        else:
            self._reply(404, b"<h2>404 - File or directory not found.</h2>")

    def _certfnsh(self, form: dict[str, str], user: str) -> None:
        mode = form.get("Mode", "")
        if mode == "newreq":
            attributes = {}
            for line in re.split(r"\r?\n", form.get("CertAttrib", "")):
                name, sep, value = line.partition(":")
                if sep and name.strip():
                    attributes[name.strip().lower()] = value.strip()
            request = self.sim.submit(form.get("CertRequest", ""), attributes, user)
        elif mode == "chkpnd" and form.get("ReqID", "").isdigit():
            found = self.sim.requests.get(int(form["ReqID"]))
            if found is None:
                self._page(error_page(mode, "(never set)", "", LAST_STATUS["empty"]))
                return
            request = found
        else:
            self._page(error_page(mode, "(never set)", "", "The parameter is incorrect. 0x80070057 "
                                  "(WIN32: 87 ERROR_INVALID_PARAMETER)"))
            return
        if request.disposition == 3:
            self._page(issued_page(request.id))
        elif request.disposition == 5:
            self._page(pending_page(request.id, check=mode == "chkpnd"))
        elif request.disposition == 2:
            self._page(denied_page(request.id, request.message))
        else:
            self._page(error_page(mode, "1 - Error", request.message, LAST_STATUS["badtag"]))

    def _certnew(self, query: dict[str, str], *, chain: bool) -> None:
        sim = self.sim
        b64 = query.get("enc", "bin").lower() == "b64"
        ref = query.get("reqid", "")
        if ref.lower() == "cacert":
            renewal = _renewal(query, len(sim.issuers))
            certs = [sim.issuers[renewal][0], sim.root]
        elif ref.isdigit() and int(ref) in sim.requests:
            request = sim.requests[int(ref)]
            if request.certificate is None:
                status = LAST_STATUS["denied"] if request.disposition == 2 else LAST_STATUS["ok"]
                self._page(error_page("", f"{request.disposition}", request.message, status))
                return
            certs = [request.certificate, sim.issuer_of(request.certificate), sim.root]
        else:
            self._page(error_page("", "(never set)", "", LAST_STATUS["empty"]))
            return
        if chain:
            der = pkcs7.serialize_certificates(certs, DER)
            self._reply(200, b64_crlf("CERTIFICATE", der) if b64 else der,
                        "application/x-pkcs7-certificates")
        else:
            der = certs[0].public_bytes(DER)
            self._reply(200, b64_crlf("CERTIFICATE", der) if b64 else der, "application/pkix-cert")


def _renewal(query: dict[str, str], count: int) -> int:
    value = query.get("renewal", str(count - 1))
    return min(int(value), count - 1) if value.isdigit() else count - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.adcs_simulator",
        description="Serve a simulated ADCS Web Enrollment (certsrv) over HTTPS on 127.0.0.1. "
                    "Type 'approve N' or 'deny N' on stdin to decide pending requests.")
    parser.add_argument("--dir", default="adcs-sim", help="where to write the CA, TLS and client "
                        "certificates (default ./adcs-sim)")
    parser.add_argument("--port", type=int, default=8445)
    parser.add_argument("--auth", choices=["basic", "ntlm", "negotiate", "cert"], default="basic")
    parser.add_argument("--username", default="CORP\\gatehouse")
    parser.add_argument("--password", default=None, help="default: random, printed at start")
    args = parser.parse_args(argv)
    sim = AdcsSimulator(Path(args.dir).resolve(), auth=args.auth, username=args.username,
                        password=args.password, port=args.port).start()
    out = sys.stdout
    out.write(f"certsrv simulator at {sim.url}/certsrv/ (auth {sim.auth})\n"
              f"  trust anchor (TLS and issued certificates): {sim.root_pem}\n"
              f"  user {sim.username} password {sim.password}\n"
              f"  client certificate: {sim.client_cert} key {sim.client_key}\n"
              f"  templates: {', '.join(f'{k} ({v})' for k, v in TEMPLATES.items())}\n")
    out.flush()
    try:
        for line in sys.stdin:
            words = line.split()
            if len(words) == 2 and words[0] in ("approve", "deny") and words[1].isdigit():
                try:
                    getattr(sim, words[0])(int(words[1]))
                    done = "approved" if words[0] == "approve" else "denied"
                    out.write(f"{done} request {words[1]}\n")
                except (KeyError, AssertionError):
                    out.write(f"request {words[1]} is not pending\n")
                out.flush()
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Record SCEP request vectors from the real clients (run by hand; see README.md here).

    cd /work/main && PYTHONPATH=. python3 tests/vectors/scep/capture.py

Starts ``gatehouse up`` on a scratch data directory, puts a recording HTTP proxy in front
of it, drives micromdm scepclient (enroll, renew) and certmonger (enroll, resubmit, rekey)
through the proxy, and writes every PKIOperation request with the RA key it was encrypted
to.  The "synthetic" family is made by this repository's test client in the shapes other
devices use (PKIOperation by GET with raw '+', as macOS/iOS and Cisco IOS send it; an
Intune CSR with the SID URI SAN), since those devices are not available here.
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from protocols.scep import message  # noqa: E402
from protocols.scep.vocabulary import (  # noqa: E402
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
    MODERN_CIPHERS,
    MODERN_DIGESTS,
)
from tests.support.server import GatehouseServer, free_port, run_cli  # noqa: E402
from tests.unit.protocols.scep.certmonger import Certmonger  # noqa: E402
from tests.unit.protocols.scep.client import (  # noqa: E402
    Client,
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)

SID_URI = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512"


class Recorder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.captured: list[tuple[str, str, bytes]] = []  # (method, path, pkiMessage)
        self.port = free_port()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self, body: bytes | None) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                if query.get("operation", [""])[0] == "PKIOperation":
                    if body is not None:
                        recorder.captured.append(("POST", self.path, body))
                    else:
                        raw = urllib.parse.urlparse(self.path).query
                        value = raw.split("message=", 1)[1].split("&")[0]
                        value = urllib.parse.unquote(value).replace(" ", "+")
                        recorder.captured.append(("GET", self.path.split("&message=")[0],
                                                  base64.b64decode(value)))
                request = urllib.request.Request(recorder.upstream + self.path, data=body,
                                                 method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, data = response.status, response.read()
                        ctype = response.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    status, data, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[tuple[str, str, bytes]]:
        out, self.captured = self.captured, []
        return out


def scepclient(workdir: Path, url: str, fingerprint: str, cn: str,
               challenge: str | None) -> None:
    args = ["scepclient", "-server-url", url, "-private-key", str(workdir / "key.pem"),
            "-certificate", str(workdir / "cert.pem"), "-cn", cn, "-ca-fingerprint", fingerprint]
    if challenge:
        args += ["-challenge", challenge]
    for name in ("csr.pem", "self.pem"):
        (workdir / name).unlink(missing_ok=True)
    subprocess.run(args, cwd=workdir, check=True, timeout=120, capture_output=True)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="scep-capture-"))
    data = scratch / "data"
    run_cli(["init"], data)  # scepclient 2.1 sends SHA-1 + DES: the legacy switch on
    config_path = data / "gatehouse.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["profiles"]["default"]["scep"] = {"accept_legacy_requests": True}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = GatehouseServer(data).start()
    recorder = Recorder(server.http_url)
    url = f"http://127.0.0.1:{recorder.port}/scep"
    vectors: list[dict[str, Any]] = []

    def keep(family: str, name: str, note: str, captured: list[tuple[str, str, bytes]],
             challenge: str | None, cn: str) -> None:
        for index, (method, path, der) in enumerate(captured):
            file = f"{family}/{name}{'-' + str(index) if len(captured) > 1 else ''}.der"
            (HERE / file).parent.mkdir(parents=True, exist_ok=True)
            (HERE / file).write_bytes(der)
            header, signed = message.read_header(der)
            pki = message.verify(header, signed, allowed_digests=MODERN_DIGESTS | LEGACY_DIGESTS)
            opened = message.open_envelope(pki, ra_der=ra_der, ra_key=ra_key,
                                           allowed_ciphers=MODERN_CIPHERS | LEGACY_CIPHERS)
            vectors.append({"file": file, "client": family, "note": note, "method": method,
                            "path": path, "message_type": header.message_type.value,
                            "transaction_id": header.transaction_id, "digest": pki.digest,
                            "cipher": opened.cipher, "challenge": challenge, "cn": cn})

    try:
        from gateway.ra import load_ra

        ra = load_ra(data / "scep" / "default" / "ra.key", data / "scep" / "default" / "ra.pem")
        ra_der, ra_key = ra.der, ra.key
        shutil.copy(data / "scep" / "default" / "ra.key", HERE / "ra.key")
        shutil.copy(data / "scep" / "default" / "ra.pem", HERE / "ra.pem")
        fingerprint = run_cli(["scep", "ra"], data).stdout.strip()

        def new_challenge() -> str:
            return run_cli(["challenge", "create", "default"], data).stdout.strip()

        work = scratch / "scepclient"
        work.mkdir()
        secret = new_challenge()
        scepclient(work, url, fingerprint, "scepclient-device", secret)
        keep("scepclient", "pkcsreq", "scepclient 2.1 first enrollment (SHA-1, DES, POST)",
             recorder.take(), secret, "scepclient-device")
        scepclient(work, url, fingerprint, "scepclient-device", None)
        keep("scepclient", "renewalreq", "scepclient 2.1 renewal signed with the issued cert",
             recorder.take(), None, "scepclient-device")

        monger = Certmonger(scratch / "certmonger").start()
        try:
            secret = new_challenge()
            monger.add_scep_ca("gh", url)
            monger.getcert("request", "-c", "gh", "-f", str(scratch / "cm-cert.pem"), "-k",
                           str(scratch / "cm-key.pem"), "-N", "CN=certmonger-device", "-L",
                           secret, "-I", "req")
            monger.wait_status("req", {"MONITORING"})
            keep("certmonger", "pkcsreq", "certmonger 0.79 enrollment (GET, AES, SHA-256)",
                 recorder.take(), secret, "certmonger-device")
            monger.getcert("resubmit", "-i", "req")
            time.sleep(2)
            monger.wait_status("req", {"MONITORING"})
            keep("certmonger", "renewal", "certmonger resubmit: PKCSReq signed with the "
                 "current certificate", recorder.take(), secret, "certmonger-device")
        finally:
            monger.stop()

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        client = Client(ra_der=ra_der, key=key, signer=self_signed(key), digest="sha256",
                        cipher="aes256_cbc")
        secret = new_challenge()
        der = client.pkcs_req(csr_with_challenge(key, "macos-device", secret))
        keep("synthetic", "get-pkcsreq", "PKIOperation by GET, '+' unescaped (macOS/iOS, "
             "Cisco IOS shape)", [("GET", "/scep?operation=PKIOperation", der)], secret,
             "macos-device")
        secret = new_challenge()
        der = client.pkcs_req(csr_with_challenge(key, "intune-device", secret, uris=(SID_URI,)))
        keep("synthetic", "intune-sid", "Intune-style CSR with the SID URI SAN",
             [("POST", "/scep?operation=PKIOperation", der)], secret, "intune-device")
        assert ra_from_ca_ra_cert  # imported for the README's reference
        (HERE / "vectors.json").write_text(json.dumps(vectors, indent=2) + "\n")
        print(f"wrote {len(vectors)} vectors to {HERE}")
    finally:
        server.stop()
        recorder.server.shutdown()


if __name__ == "__main__":
    main()

"""A small authoritative DNS server for tests, on a loopback UDP+TCP port (dnspython).

Every name resolves to 127.0.0.1 (A) unless ``addresses`` says otherwise; AAAA answers
are empty unless set.  TXT and CAA records are whatever the test puts in ``txt`` / ``caa``,
or, for hook scripts running in other processes (certbot --manual hooks, lego's exec
provider), in the JSON ``control`` file: {"txt": {"_acme-challenge.NAME": ["value", ...]}}.
``python -m tests.support.dns_server CONTROL present|cleanup NAME VALUE`` edits that file.
"""

from __future__ import annotations

import json
import socketserver
import struct
import threading
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsTestServer:
    """Records by lower-case name (no trailing dot).  ``control`` is a JSON file the
    server re-reads on every query, so hook scripts in other processes can add TXT
    records: {"txt": {name: [values]}}."""

    def __init__(self, control: Path | None = None) -> None:
        self.addresses: dict[str, list[str]] = {}
        self.default_a = "127.0.0.1"
        self.txt: dict[str, list[str]] = {}
        self.caa: dict[str, list[tuple[int, str, str]]] = {}
        self.control = control
        self.lock = threading.Lock()
        self.queries: list[tuple[str, str]] = []
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.TCPServer | None = None
        self.port = 0

    # -- records ------------------------------------------------------------------------

    def set_txt(self, name: str, *values: str) -> None:
        with self.lock:
            self.txt[name.lower().rstrip(".")] = list(values)

    def _txt(self, name: str) -> list[str]:
        values = list(self.txt.get(name, []))
        if self.control is not None and self.control.exists():
            try:
                data = json.loads(self.control.read_text() or "{}")
            except ValueError:
                data = {}
            values += data.get("txt", {}).get(name, [])
        return values

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = question.rdtype
            self.queries.append((name, dns.rdatatype.to_text(rdtype)))
            texts: list[str] = []
            with self.lock:
                if rdtype == dns.rdatatype.A:
                    texts = [a for a in self.addresses.get(name, [self.default_a]) if ":" not in a]
                elif rdtype == dns.rdatatype.AAAA:
                    texts = [a for a in self.addresses.get(name, []) if ":" in a]
                elif rdtype == dns.rdatatype.TXT:
                    texts = ['"' + v + '"' for v in self._txt(name)]
                elif rdtype == dns.rdatatype.CAA:
                    texts = [f'{flags} {tag} "{value}"' for flags, tag, value in
                             self.caa.get(name, [])]
                elif rdtype == dns.rdatatype.SOA:
                    texts = ["ns.test. hostmaster.test. 1 3600 600 86400 60"]
            if texts:
                rrset = dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, rdtype, texts)
                response.answer.append(rrset)
        return response.to_wire()

    # -- serving ------------------------------------------------------------------------

    def start(self) -> DnsTestServer:
        owner = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                try:
                    sock.sendto(owner.answer(data), self.client_address)
                except Exception:  # a test server: drop what it cannot parse
                    pass

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            return
                        data += chunk
                    reply = owner.answer(data)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                except Exception:
                    pass

        # Find a port free for both UDP and TCP.
        for _ in range(50):
            udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no free port for the test DNS server")
        udp.daemon_threads = tcp.daemon_threads = True
        self._udp, self._tcp, self.port = udp, tcp, port
        for server in (udp, tcp):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()




def edit_control(control: Path, action: str, name: str, value: str) -> None:
    """Add (present) or remove (cleanup) one TXT value in the control file, under a lock."""
    import fcntl
    import os

    name = name.lower().rstrip(".")
    with open(f"{control}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(control.read_text())
        except (OSError, ValueError):
            data = {}
        txt = data.setdefault("txt", {})
        values = [v for v in txt.get(name, []) if v != value]
        if action == "present":
            values.append(value)
        txt[name] = values
        tmp = control.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, control)


if __name__ == "__main__":
    import sys

    edit_control(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])

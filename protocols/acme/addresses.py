"""Which addresses ACME validation may reach (issue #10 rule 7, server-side request forgery).

By default only publicly routable unicast addresses: never loopback, RFC 1918 / unique-local
private space, link-local (cloud metadata: 169.254.169.254, fd00:ec2::254), CGNAT
100.64.0.0/10, unspecified, multicast, reserved or documentation ranges, nor any of those
wrapped in an IPv6 form (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4,
Teredo).  Operators open ranges explicitly for labs (``acme.validation_allow`` or
``GATEHOUSE_ACME_VALIDATION_ALLOW``, a list of CIDRs); an address inside an opened range is
allowed whatever its kind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix


def parse_allow(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses) as networks; ValueError names the bad entry."""
    out: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network in CIDR form") from None
    return tuple(out)


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The address itself and any IPv4 address an IPv6 form carries."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.append(address.teredo[1])
        if address in _NAT64 or address in _NAT64_LOCAL:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
        or address.is_loopback or address.is_link_local or address.is_private)


def allowed(address: IPAddress | str, allow: Iterable[IPNetwork] = ()) -> bool:
    """True when validation may connect to ``address``.

    An address in an opened range is allowed; otherwise it and every IPv4 address it
    wraps must be publicly routable.
    """
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
    opened = tuple(allow)
    candidates = _embedded(address)
    if any(a in net for a in candidates for net in opened if a.version == net.version):
        return True
    return all(_public(a) for a in candidates)

"""Which addresses ACME validation may reach (issue #10 rule 7)."""

from __future__ import annotations

import pytest

from protocols.acme.addresses import allowed, parse_allow


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::",
    "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1", "not-an-address",
])
def test_non_public_refused_by_default(address: str) -> None:
    assert not allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_allowed(address: str) -> None:
    assert allowed(address)


def test_opened_ranges() -> None:
    lab = parse_allow(["127.0.0.0/8", "::1/128", ""])
    assert allowed("127.0.0.1", lab) and allowed("::1", lab)
    assert allowed("::ffff:127.0.0.1", lab)  # the mapped form of an opened address
    assert not allowed("10.0.0.1", lab) and not allowed("169.254.169.254", lab)
    with pytest.raises(ValueError, match="CIDR"):
        parse_allow(["10.0.0.0/33"])

"""Addressing vectors from docs/addressing.md."""

import ipaddress

import pytest

from ygbridge.addressing import (
    MailAddress,
    address_for_key,
    address_from_meshname,
    domain_for,
    is_node_address,
    meshname,
    parse_domain,
)
from ygbridge.errors import AddressError

KEYS = [
    (
        "1d12ed55ce16d31098c7f35fe31b836b5330853f526a82799faa820ce2e630be",
        "203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47",
    ),
    (
        "013659dd8bab0b9c2014c6d2ddfc2e8af34ce94c8369599f43a35d5220abf124",
        "207:c9a6:2274:54f4:63df:eb39:2d22:3d1",
    ),
]
NAMES = [
    ("200:6fc8:9220:f400:5cc2:305a:4ac6:967e", "aiag7sesed2aaxgcgbnevruwpy"),
    ("215:15c:84e0:8dd5:7590:bfcd:61cf:cff7", "aikqcxee4cg5k5mqx7gwdt6p64"),
    ("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47", "aibs5ujkumpjftxwooamuaooi4"),
]


@pytest.mark.parametrize(("key", "address"), KEYS)
def test_address_for_key(key: str, address: str) -> None:
    assert address_for_key(bytes.fromhex(key)) == ipaddress.IPv6Address(address)


@pytest.mark.parametrize(("address", "name"), NAMES)
def test_meshname_round_trip(address: str, name: str) -> None:
    ip = ipaddress.IPv6Address(address)
    assert meshname(ip) == name
    assert address_from_meshname(name) == ip
    assert domain_for(ip) == name + ".meship"


def test_both_forms_name_the_same_mailbox() -> None:
    hostname = MailAddress.parse("Bob@AIBS5UJKUMPJFTXWOOAMUAOOI4.meship")
    literal = MailAddress.parse("<bob@[IPv6:203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47]>")
    assert hostname == literal
    assert str(literal) == "bob@aibs5ujkumpjftxwooamuaooi4.meship"
    assert hostname.literal == "bob@[IPv6:203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47]"


def test_subnet_addresses_are_destinations_but_not_identities() -> None:
    subnet_host = parse_domain("[IPv6:303:2ed1:2aa3:1e92::1]")
    assert not is_node_address(subnet_host)
    assert is_node_address(parse_domain("[IPv6:203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47]"))


@pytest.mark.parametrize(
    "text",
    [
        "bob@example.com",
        "bob@[IPv6:fd00::1]",
        "bob@[1.2.3.4]",
        "bob@notbase32!.meship",
        "nobody",
        "@x.meship",
        "bob@aaaa.meship",
    ],
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        MailAddress.parse(text)


def test_key_length_checked() -> None:
    with pytest.raises(AddressError):
        address_for_key(b"short")

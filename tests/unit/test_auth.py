"""Password hashing and login names."""

import ipaddress

import pytest

from ygbridge.addressing import domain_for
from ygbridge.auth import hash_password, login_name, verify_password
from ygbridge.errors import UserError

NODE = ipaddress.IPv6Address("203:2ed1:2aa3:1e92:cef6:7380:ca01:ce47")
OTHER = ipaddress.IPv6Address("207:c9a6:2274:54f4:63df:eb39:2d22:3d1")


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith(b"$argon2id$")
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "Correct horse")
    assert not verify_password(b"not a hash", "correct horse")


@pytest.mark.parametrize("login", ["alice", "Alice", f"alice@{domain_for(NODE)}", f"alice@[IPv6:{NODE}]"])
def test_login_by_name_or_full_address(login: str) -> None:
    assert login_name(login, NODE) == "alice"


@pytest.mark.parametrize("login", [f"alice@{domain_for(OTHER)}", "al ice", ""])
def test_login_refused_for_other_nodes_and_bad_names(login: str) -> None:
    with pytest.raises(UserError):
        login_name(login, NODE)

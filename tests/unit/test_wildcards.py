"""LIST patterns: the automaton agrees with a (slow) regular expression, and stays linear."""

from __future__ import annotations

import random
import re

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ygbridge.imap.mailbox import ImapAccount
from ygbridge.imap.wildcards import MailboxPattern
from ygbridge.mailhub import MailHub
from ygbridge.testing.deferreds import result_of
from ygbridge.testing.store import ImmediateDB, alice_database


def reference(pattern: str, name: str) -> bool:
    special = {"*": ".*", "%": "[^/]*"}
    return re.fullmatch("".join(special.get(c) or re.escape(c) for c in pattern), name) is not None


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%", "abc", True),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("%/%", "a/b", True),
        ("*b", "a/b", True),
        ("a%*%c", "a/b/c", True),
        ("", "", True),
        ("x", "xy", False),
        ("é%", "été", True),
    ],
)
def test_examples(pattern: str, name: str, expected: bool) -> None:
    assert MailboxPattern(pattern, "/").matches(name) is expected


def test_agrees_with_a_regular_expression() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        pattern = "".join(rng.choice("ab/*%") for _ in range(rng.randint(0, 7)))
        compiled = MailboxPattern(pattern, "/")
        for _ in range(5):
            name = "".join(rng.choice("abc/") for _ in range(rng.randint(0, 9)))
            assert compiled.matches(name) == reference(pattern, name), (pattern, name)


def test_many_wildcards_do_not_backtrack() -> None:
    """A regular expression takes hours here; the automaton one step per character."""
    pattern = MailboxPattern("*a" * 30 + "*b", "/")
    assert not any(pattern.matches("a" * 250) for _ in range(200))
    assert pattern.prefix == ""
    assert MailboxPattern("Work/2024/%", "/").prefix == "Work/2024/"


db = pytest.fixture(alice_database, autouse=True, name="db")


def test_list_of_thousands_of_mailboxes() -> None:
    mailhub = MailHub(ImmediateDB(), Clock(), mailboxes_per_user=5000)
    account = result_of(Deferred.fromCoroutine(mailhub.open_user("alice")))
    for n in range(2000):
        result_of(Deferred.fromCoroutine(mailhub.create(account, f"Box{n % 40}/Sub{n}")))
    imap = ImapAccount(mailhub, account)
    everything = imap.listMailboxes("", "*")
    assert len(everything) == 5 + 40 + 2000
    assert [name for name, _ in everything] == sorted(name for name, _ in everything)
    top = {name: box.getFlags() for name, box in imap.listMailboxes("", "%")}
    assert top["Box7"] == ["\\HasChildren"] and top["Sent"] == ["\\HasNoChildren", "\\Sent"]
    assert len(top) == 45
    below = imap.listMailboxes("Box7/", "%")
    assert len(below) == 50 and all(box.getFlags() == ["\\HasNoChildren"] for _, box in below)
    assert [name for name, _ in imap.listMailboxes("", "inbox")] == ["INBOX"]
    assert not any(imap.isSubscribed(name) for name, _ in below)

"""Recording the router identity a node serves, to notice a changed key."""

from ygbridge.store.identity import identity_history, record_identity
from ygbridge.testing.store import memory_database


def test_first_and_unchanged_identities_are_not_changes() -> None:
    memory_database()
    assert record_identity("aa", "203::1", 1.0) is None
    assert record_identity("aa", "203::1", 2.0) is None
    assert identity_history() == [(1.0, "aa", "203::1")]


def test_a_new_key_reports_the_previous_identity() -> None:
    memory_database()
    record_identity("aa", "203::1", 1.0)
    assert record_identity("bb", "204::2", 5.0) == ("aa", "203::1")
    assert [address for _, _, address in identity_history()] == ["203::1", "204::2"]

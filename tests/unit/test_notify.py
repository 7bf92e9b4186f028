"""RFC 3461 requests: ESMTP parameter parsing (for the servers) and xtext."""

import pytest

from ygbridge.notify import (
    DsnRequest,
    Notify,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)


def test_xtext_round_trip() -> None:
    for text in ("plain", "a+b=c", "with space", "grüße"):
        encoded = xtext_encode(text)
        assert all(33 <= ord(ch) <= 126 and ch != "=" for ch in encoded)
        assert xtext_decode(encoded) == text


@pytest.mark.parametrize("bad", ["a b", "a=b", "a+4", "a+zz", "x+0D+0Ay", "+00"])
def test_bad_xtext(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


def test_mail_params() -> None:
    assert parse_mail_params(["SIZE=10", "ret=full", "ENVID=QQ+2B1"]) == ("FULL", "QQ+1")
    assert parse_mail_params([]) == (None, None)
    for bad in (["RET=ALL"], ["ENVID="], ["ENVID=" + "x" * 101], ["RET=FULL", "RET=HDRS"]):
        with pytest.raises(ValueError):
            parse_mail_params(bad)


def test_rcpt_params() -> None:
    notify = parse_rcpt_params(["NOTIFY=success,DELAY", "ORCPT=RFC822;bob+40x.meship"])
    assert notify == Notify(frozenset({"SUCCESS", "DELAY"}), "rfc822;bob@x.meship")
    assert notify.wants("SUCCESS") and not notify.wants("FAILURE")
    assert parse_rcpt_params(["NOTIFY=NEVER"]).wants("FAILURE") is False
    assert parse_rcpt_params([]) == Notify()
    for bad in (["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["NOTIFY="], ["ORCPT=bob@x"], ["ORCPT=;x"]):
        with pytest.raises(ValueError):
            parse_rcpt_params(bad)


def test_defaults_are_failure_and_delay() -> None:
    request = DsnRequest()
    assert request.notify("anyone").wants("FAILURE") and request.notify("anyone").wants("DELAY")
    assert not request.notify("anyone").wants("SUCCESS")
    assert request.mail_params() == "" and Notify().params() == ""

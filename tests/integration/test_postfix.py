"""ygbridge and a real Postfix (Debian's package) on the same mesh, each on its own yggdrasil 0.5.12 node.

Node A runs ygbridge with alice; node P runs Postfix, configured as README's "Exchanging mail with
Postfix on the mesh" says, with the virtual user dave. Only SMTP on the wire is relied upon, so
these tests hold whatever implements the servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import harness, messages
from .messages import CLIENT_TRACES, fetch_body, make_message, send, wait_for_message
from .postfix import Postfix, parse, postfix_available

ALICE_PASSWORD = "alice-Secret-1"
TIMEOUT = 60.0


@dataclass
class Site:
    lab: harness.Lab
    a: harness.Node
    postfix: Postfix

    @property
    def alice(self) -> str:
        return self.a.bridge.address_of("alice")

    @property
    def dave(self) -> str:
        return self.postfix.address_of("dave")


@pytest.fixture(scope="module")
def site(product: None, module_lab: harness.Lab) -> Iterator[Site]:
    missing = postfix_available()
    if missing:
        pytest.fail(missing, pytrace=False)
    a, p = module_lab.add_node("a", "0.5.12"), module_lab.add_node("p", "0.5.12")
    module_lab.connect(p, a)
    module_lab.start_routers()
    module_lab.wait_reachable(a, p)
    a.bridge.setup(users={"alice": ALICE_PASSWORD})
    a.bridge.start()
    postfix = Postfix(p, users=["dave"])
    try:
        postfix.start(ygbridge_nodes=[a.address])
        yield Site(module_lab, a, postfix)
    finally:
        postfix.close()


def alice_smtp(site: Site):  # type: ignore[no-untyped-def]
    return site.a.bridge.smtp(("alice", ALICE_PASSWORD))


def alice_imap(site: Site):  # type: ignore[no-untyped-def]
    return site.a.bridge.imap(("alice", ALICE_PASSWORD))


def has(text: str) -> object:
    return lambda raw: text.encode() in raw


def ygbridge_trace(raw: bytes) -> list[str]:
    """The Received lines ygbridge wrote (unfolded)."""
    return [" ".join(str(r).split()) for r in parse(raw).get_all("Received", []) if "(ygbridge)" in str(r)]


def test_readme_settings_are_the_tested_ones(site: Site) -> None:
    """README's main.cf for a Postfix operator is what this Postfix runs with."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("2. In `/etc/postfix/main.cf`", 1)[1].split("3. In `/etc/postfix/transport`", 1)[0]
    documented = dict(
        (part.strip() for part in line.split("=", 1))
        for line in (raw.strip() for raw in block.splitlines() if raw.startswith("       "))
        if line and not line.startswith("#")
    )
    assert "myhostname" in documented and "transport_maps" in documented
    tested = site.postfix.main_cf()
    for key, value in documented.items():
        expected = (
            value.replace("DOMAIN", site.postfix.domain)
            .replace("ADDRESS", site.postfix.address.compressed)
            .replace("/etc/postfix", str(site.postfix.config))
        )
        assert tested.get(key) == expected, key


# --------------------------------------------------------------------------- Postfix -> ygbridge


@pytest.mark.parametrize("form", ["meshname", "literal"])
def test_postfix_to_ygbridge(site: Site, form: str) -> None:
    to = site.alice if form == "meshname" else site.a.bridge.literal_of("alice")
    message, mid = make_message(site.dave, [to], f"from Postfix to a {form}", "grüße from Postfix\n")
    site.postfix.submit(site.dave, [to], message)
    with alice_imap(site) as imap:
        stored = fetch_body(imap, wait_for_message(imap, mid, timeout=TIMEOUT))
    trace, rest = messages.split_trace(stored)
    assert trace[0] == f"Return-Path: <{site.dave}>\r\n".encode()
    ours = " ".join(trace[1].decode().split())
    assert ours.startswith(
        f"Received: from {site.postfix.domain} ([IPv6:{site.postfix.address.compressed}]) "
        f"by {site.a.bridge.domain} (ygbridge) with ESMTP; "
    ), ours
    assert rest.endswith(message)  # below Postfix's own Received lines, byte for byte


def test_postfix_relays_a_dsn_request_and_ygbridge_reports_delivery(site: Site) -> None:
    """dave asks Postfix for a receipt; Postfix passes NOTIFY on (ygbridge advertises DSN) and the
    "delivered" report comes from ygbridge, which stored the message, not a "relayed" one from Postfix."""
    message, mid = make_message(site.dave, [site.alice], "receipt, please", "hi\n")
    site.postfix.submit(
        site.dave, [site.alice], message, ["RET=HDRS", "ENVID=dave+2B1"], ["NOTIFY=SUCCESS,FAILURE"]
    )
    with alice_imap(site) as imap:
        wait_for_message(imap, mid, timeout=TIMEOUT)
    raw = site.postfix.wait_for(
        "dave", lambda raw: mid.encode() in raw and b"Action: delivered" in raw, what="a delivered report"
    )
    report = parse(raw)
    assert report["Return-Path"] == "<>" and report.get_content_type() == "multipart/report"
    _, status, headers = report.iter_parts()
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == f"dns; {site.a.bridge.domain}"
    assert per_message["Original-Envelope-Id"] == "dave+1"
    assert per_recipient["Final-Recipient"] == f"rfc822; {site.alice}"
    assert per_recipient["Status"] == "2.0.0"
    assert headers.get_content_type() == "text/rfc822-headers" and mid in headers.get_content()


def test_postfix_smtputf8_message_arrives_byte_for_byte(site: Site) -> None:
    """Postfix passes SMTPUTF8 on to ygbridge, which advertises it (Postfix bounces a message with
    UTF-8 header fields that was submitted with SMTPUTF8 when the next hop lacks it)."""
    subject = "Grüße aus Zürich ✉ 日本語"
    message, mid = make_message(
        site.dave, [site.alice], subject, "Ärger? Nein. 🦉\n", extra_headers=[("Comments", "Jörg ✓")]
    )
    site.postfix.submit(site.dave, [site.alice], message, ["SMTPUTF8"])
    with alice_imap(site) as imap:
        stored = fetch_body(imap, wait_for_message(imap, mid, timeout=TIMEOUT))
    assert stored.endswith(message)
    assert f"Subject: {subject}\r\n".encode() in stored


# --------------------------------------------------------------------------- ygbridge -> Postfix


@pytest.mark.parametrize("form", ["meshname", "literal"])
def test_ygbridge_to_postfix(site: Site, form: str) -> None:
    to = site.dave if form == "meshname" else site.postfix.literal_of("dave")
    message, mid = make_message(site.alice, [to], f"from ygbridge to a {form}", "hello Postfix\n")
    with alice_smtp(site) as smtp:
        send(smtp, site.alice, [to], message)
    received = site.postfix.wait_for("dave", has(mid), what=mid)
    parsed = parse(received)
    assert parsed["Return-Path"] == f"<{site.alice}>"
    assert ygbridge_trace(received) == [
        f"from {site.a.bridge.domain} (authenticated user alice) by {site.a.bridge.domain} (ygbridge) "
        f"with ESMTPA; {ygbridge_trace(received)[0].rsplit('; ', 1)[1]}"
    ]
    header = received.split(b"\n\n", 1)[0]
    assert not any(leak in header for leak in CLIENT_TRACES), header
    assert received.replace(b"\n", b"\r\n").endswith(message.split(b"\r\n\r\n", 1)[1])


def test_reply_from_ygbridge_to_postfix(site: Site) -> None:
    question, question_id = make_message(site.dave, [site.alice], "lunch?", "Lunch at noon?\n")
    site.postfix.submit(site.dave, [site.alice], question)
    with alice_imap(site) as imap:
        wait_for_message(imap, question_id, timeout=TIMEOUT)
    answer, answer_id = make_message(
        site.alice,
        [site.dave],
        "Re: lunch?",
        "Yes.\n> Lunch at noon?\n",
        extra_headers=[("In-Reply-To", question_id), ("References", question_id)],
    )
    with alice_smtp(site) as smtp:
        send(smtp, site.alice, [site.dave], answer)
    reply = parse(site.postfix.wait_for("dave", has(answer_id), what=answer_id))
    assert reply["In-Reply-To"] == question_id and reply["Subject"] == "Re: lunch?"


# --------------------------------------------------------------------------- refusals


def test_postfix_rejection_becomes_a_dsn_in_the_senders_inbox(site: Site) -> None:
    nobody = site.postfix.address_of("nobody")
    message, mid = make_message(site.alice, [nobody], "to nobody at Postfix", "anyone?\n")
    with alice_smtp(site) as smtp:
        send(smtp, site.alice, [nobody], message)  # ygbridge cannot know Postfix's users: accepted
    with alice_imap(site) as imap:
        uid, raw = messages.wait_for_body(
            imap,
            lambda body: mid.encode() in body and b"multipart/report" in body.lower(),
            what=f"a delivery status notification for {mid}",
            timeout=TIMEOUT,
        )
    assert raw.startswith(b"Return-Path: <>\r\n")
    report = parse(raw)
    assert report.get_content_type() == "multipart/report"
    human, status, headers = report.iter_parts()
    text = human.get_content()
    assert "{" not in text
    assert "Your message could not be delivered to the following recipient(s):" in text
    listed = re.search(rf"^  {re.escape(nobody)}: (550 5\.1\.1 .*)$", text, re.MULTILINE)
    assert listed, text
    assert "User unknown" in listed.group(1)  # Postfix's own words
    per_recipient = status.get_payload()[1]
    assert per_recipient["Status"] == "5.1.1" and per_recipient["Action"] == "failed"
    assert per_recipient["Remote-MTA"] == f"dns; {site.postfix.domain}"
    assert mid in headers.get_content()


def test_forged_from_at_postfix_is_refused_by_ygbridge(site: Site) -> None:
    """dave's envelope is honest, but his From: claims alice's own address: ygbridge refuses the
    message with 550 5.7.1, and Postfix bounces it to dave with that reply."""
    forged, mid = make_message(site.alice, [site.alice], "a note from yourself", "trust me\n")
    site.postfix.submit(site.dave, [site.alice], forged)
    bounce = site.postfix.wait_for(
        "dave", lambda raw: mid.encode() in raw and b"5.7.1" in raw, what="a bounce"
    )
    assert b"550 5.7.1 From: alice@" in bounce
    assert re.search(rf"to=<{re.escape(site.alice)}>.*status=bounced .*550 5\.7\.1", site.postfix.log())
    with alice_imap(site) as imap:
        assert mid not in messages.message_index(imap)


def test_a_next_hop_without_smtputf8_gets_no_internationalised_message(site: Site) -> None:
    """RFC 6531 section 3.2 with Postfix at ``smtputf8_enable = no`` (it then offers no SMTPUTF8):
    ygbridge sends neither a message with UTF-8 header fields nor one to a UTF-8 address there,
    and alice's INBOX gets a bounce for each that says why."""
    dorte = f"dörte@{site.postfix.domain}"
    header, header_id = make_message(site.alice, [site.dave], "Grüße an Dave", "ASCII body\n")
    address, address_id = make_message(site.alice, [dorte], "to dörte", "hello\n")
    with site.postfix.changed(smtputf8_enable="no"):
        assert "SMTPUTF8" not in site.postfix.ehlo_keywords()
        with alice_smtp(site) as smtp:
            for message, to in ((header, site.dave), (address, dorte)):
                assert smtp.sendmail(site.alice, [to], message, ["SMTPUTF8", "BODY=8BITMIME"]) == {}
        with alice_imap(site) as imap:
            bounces = {
                mid: messages.wait_for_body(
                    imap,
                    lambda body, mid=mid: mid.encode() in body and b"multipart/report" in body,
                    what=f"the bounce of {mid}",
                    timeout=TIMEOUT,
                )[1]
                for mid in (header_id, address_id)
            }
    assert "SMTPUTF8" in site.postfix.ehlo_keywords()  # as it was
    node = site.postfix.address.compressed
    for mid, to, reply, why in (
        (header_id, site.dave, "550 5.6.9", "a message with non-ASCII header fields cannot be sent to it"),
        (address_id, dorte, "553 5.6.7", "non-ASCII addresses cannot be sent to it"),
    ):
        raw = bounces[mid]
        report = parse(raw)
        assert report["Return-Path"] == "<>"
        human, status_part, returned = report.iter_parts()
        listed = f"  {to}: {reply} {node} does not support SMTPUTF8 (RFC 6531): {why}"
        assert listed in human.get_content(), human.get_content()
        # internationalised mail: RFC 6533's types, and its utf-8 address type for dörte
        assert status_part.get_content_type() == "message/global-delivery-status"
        assert returned.get_content_type() == "message/global-headers"
        kind = "rfc822" if to.isascii() else "utf-8"
        fields = f"Final-Recipient: {kind}; {to}\r\nAction: failed\r\nStatus: {reply[4:]}\r\n"
        assert fields.encode() in raw, raw
        assert mid not in site.postfix.log()  # never handed over: Postfix logs every message-id it takes
    assert all(header_id.encode() not in raw for raw in site.postfix.maildir("dave"))

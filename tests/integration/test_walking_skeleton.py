"""A message's whole walk on two real nodes (yggdrasil 0.5.12): submission -> mesh -> IMAP.

Node A has alice and carol, node B has bob. Each test sends its own messages (fresh Message-IDs),
so the tests share one pair of nodes; the tests that stop or restart B run last.
"""

from __future__ import annotations

import imaplib
import ipaddress
import smtplib

import pytest

from . import harness, messages
from .messages import fetch_body, fetch_flags, make_message, send, wait_for_message

PASSWORDS = {"alice": "alice-Secret-1", "carol": "carol-Secret-2", "bob": "bob-Secret-3"}
BODY = (
    "Hello over the mesh.\n"
    ".a line that starts with a dot (dot-stuffed on the wire)\n"
    "..and one with two\n"
    "UTF-8 in an 8bit body: grüße, ℵ₀, 🦉\n"
    "\n"
    "trailing spaces stay   \n"
    "-- \nalice\n"
)
DELIVERY_TIMEOUT = 60.0


class Mesh(harness.Pair):
    """Nodes A and B with their users' addresses."""

    @property
    def alice(self) -> str:
        return self.address("alice")

    @property
    def carol(self) -> str:
        return self.address("carol")

    @property
    def bob(self) -> str:
        return self.address("bob")


@pytest.fixture(scope="module")
def mesh(product: None, module_lab: harness.Lab) -> Mesh:
    return Mesh.start(module_lab, {n: PASSWORDS[n] for n in ("alice", "carol")}, {"bob": PASSWORDS["bob"]})


def login(name: str) -> tuple[str, str]:
    return name, PASSWORDS[name]


def deliver_and_check(
    mesh_node: harness.Node, user: str, message: bytes, message_id: str, *, sender: str, hops: int = 2
) -> int:
    """Wait until ``message_id`` is in ``user``'s INBOX and check BODY[] is byte-identical below
    its trace fields (a Received per hop: submission, then the mesh)."""
    with mesh_node.bridge.imap(login(user)) as imap:
        uid = wait_for_message(imap, message_id, timeout=DELIVERY_TIMEOUT)
        messages.check_delivered(fetch_body(imap, uid), message, received=hops, return_path=sender)
    return uid


def test_ready_event_names_the_node(mesh: Mesh) -> None:
    for node in (mesh.a, mesh.b):
        ready = node.bridge.ready
        assert ready is not None
        assert ipaddress.IPv6Address(ready["address"]) == node.address
        assert ready["domain"] == harness.meshname_domain(node.address)


def test_service_logs_json_lines(mesh: Mesh) -> None:
    """With ``--logger ygbridge.logs.observer`` every line on stdout is one JSON object."""
    for node in (mesh.a, mesh.b):
        assert node.bridge.run is not None
        assert node.bridge.run.non_json_lines() == []


def test_mail_to_meshname_domain(mesh: Mesh) -> None:
    message, mid = make_message(mesh.alice, [mesh.bob], "to a meshname domain", BODY)
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [mesh.bob], message)
    deliver_and_check(mesh.b, "bob", message, mid, sender=mesh.alice)


def test_mail_to_address_literal(mesh: Mesh) -> None:
    bob = mesh.b.bridge.literal_of("bob")
    message, mid = make_message(mesh.alice, [bob], "to an address literal", BODY)
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [bob], message)
    deliver_and_check(mesh.b, "bob", message, mid, sender=mesh.alice)


def test_reply(mesh: Mesh) -> None:
    first, first_id = make_message(mesh.alice, [mesh.bob], "question", "Are you there?\n")
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [mesh.bob], first)
    deliver_and_check(mesh.b, "bob", first, first_id, sender=mesh.alice)

    reply, reply_id = make_message(
        mesh.bob,
        [mesh.alice],
        "Re: question",
        "Yes.\n> Are you there?\n",
        extra_headers=[("In-Reply-To", first_id), ("References", first_id)],
    )
    with mesh.b.bridge.smtp(login("bob")) as smtp:
        send(smtp, mesh.bob, [mesh.alice], reply)
    deliver_and_check(mesh.a, "alice", reply, reply_id, sender=mesh.bob)


def test_local_delivery_to_self_and_neighbour(mesh: Mesh) -> None:
    recipients = [mesh.alice, mesh.carol]
    message, mid = make_message(mesh.alice, recipients, "note to self and carol", BODY)
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, recipients, message)
    deliver_and_check(mesh.a, "alice", message, mid, sender=mesh.alice, hops=1)
    deliver_and_check(mesh.a, "carol", message, mid, sender=mesh.alice, hops=1)


def test_login_with_full_address(mesh: Mesh) -> None:
    message, mid = make_message(mesh.alice, [mesh.bob], "logged in with an address", "hi\n")
    with mesh.a.bridge.smtp((mesh.alice, PASSWORDS["alice"])) as smtp:
        send(smtp, mesh.alice, [mesh.bob], message)
    with mesh.b.bridge.imap((mesh.bob, PASSWORDS["bob"])) as imap:
        uid = wait_for_message(imap, mid, timeout=DELIVERY_TIMEOUT)
        messages.check_delivered(fetch_body(imap, uid), message, received=2, return_path=mesh.alice)


def test_wrong_password_is_refused(mesh: Mesh) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError):
        with mesh.a.bridge.smtp(("alice", "not-her-password")):
            pass
    with pytest.raises(imaplib.IMAP4.error):
        with mesh.b.bridge.imap(("bob", "not-his-password")):
            pass


def test_idle_announces_new_mail(mesh: Mesh) -> None:
    message, mid = make_message(mesh.alice, [mesh.bob], "pushed", "wake up\n")

    def submit() -> None:
        with mesh.a.bridge.smtp(login("alice")) as smtp:
            send(smtp, mesh.alice, [mesh.bob], message)

    def exists(line: bytes) -> bool:
        return line.rstrip().upper().endswith(b"EXISTS")

    with mesh.b.bridge.imap(login("bob")) as imap:
        messages.message_index(imap)  # SELECT INBOX
        seen = messages.idle_until(imap, exists, timeout=DELIVERY_TIMEOUT, then=submit)
        assert any(exists(line) for line in seen), seen
        uid = wait_for_message(imap, mid, timeout=10)
        messages.check_delivered(fetch_body(imap, uid), message, received=2, return_path=mesh.alice)


# --- refusals on the submission port


def test_no_relay_without_auth(mesh: Mesh) -> None:
    with mesh.a.bridge.smtp() as smtp:
        code, text = smtp.mail(mesh.alice)
        if code == 250:
            code, text = smtp.rcpt(mesh.bob)
        assert code in (530, 550), (code, text)


def test_mail_from_someone_else_is_refused(mesh: Mesh) -> None:
    for impostor in (mesh.carol, mesh.bob):
        with mesh.a.bridge.smtp(login("alice")) as smtp:
            code, text = smtp.mail(impostor)
            assert 500 <= code < 600, (impostor, code, text)


def test_visible_sender_must_be_your_own(mesh: Mesh) -> None:
    """From: carol on alice's login is refused after DATA, and nothing is delivered."""
    message, mid = make_message(mesh.carol, [mesh.bob], "pretending", "I am carol\n")
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(mesh.alice, [mesh.bob], message)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 From: carol@")
    with mesh.a.bridge.imap(login("carol")) as imap:
        assert mid not in messages.message_index(imap)


@pytest.mark.parametrize("outside", ["bob@[IPv6:2001:db8::25]", "bob@[IPv6:fd00::1]", "bob@example.com"])
def test_destination_outside_the_mesh_is_refused_at_rcpt(mesh: Mesh, outside: str) -> None:
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        code, text = smtp.mail(mesh.alice)
        assert code == 250, (code, text)
        code, text = smtp.rcpt(outside)
        assert 500 <= code < 600, (code, text)


# --- the mesh port, spoken to directly from the other node


def test_mesh_port_refuses_a_forged_sender(mesh: Mesh) -> None:
    """B accepts MAIL FROM only for the domain whose address is the connection's source."""
    forged = f"mallory@{harness.meshname_domain(ipaddress.IPv6Address('200::1'))}"
    with harness.smtp_client(mesh.a.ns, str(mesh.b.address), harness.MESH_PORT) as smtp:
        code, text = smtp.mail(forged)
        assert code == 550, (code, text)


def test_mesh_port_refuses_a_visible_sender_of_another_node(mesh: Mesh) -> None:
    """A's envelope is honest (alice@A) but From: names bob's own node: B refuses it."""
    forged, mid = make_message(mesh.b.bridge.address_of("postmaster"), [mesh.bob], "from your admin", "hi\n")
    with harness.smtp_client(mesh.a.ns, str(mesh.b.address), harness.MESH_PORT) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(mesh.alice, [mesh.bob], forged)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 From: postmaster@")
    with mesh.b.bridge.imap(login("bob")) as imap:
        assert mid not in messages.message_index(imap)


def test_mesh_port_refuses_relaying_and_unknown_users(mesh: Mesh) -> None:
    with harness.smtp_client(mesh.a.ns, str(mesh.b.address), harness.MESH_PORT) as smtp:
        code, text = smtp.mail(mesh.alice)
        assert code == 250, (code, text)
        for recipient in (mesh.carol, mesh.b.bridge.address_of("nobody")):
            code, text = smtp.rcpt(recipient)
            assert code == 550, (recipient, code, text)


# --- last: restarting B keeps messages, flags and users


def test_restart_keeps_messages_flags_and_users(mesh: Mesh) -> None:
    message, mid = make_message(mesh.alice, [mesh.bob], "keep me", BODY)
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [mesh.bob], message)
    with mesh.b.bridge.imap(login("bob")) as imap:
        uid = wait_for_message(imap, mid, timeout=DELIVERY_TIMEOUT)
        status, data = imap.uid("STORE", str(uid), "+FLAGS", r"(\Flagged)")
        assert status == "OK", data
        assert "\\Flagged" in fetch_flags(imap, uid)
        before = messages.message_index(imap)

    ready = mesh.b.bridge.restart()
    assert ipaddress.IPv6Address(ready["address"]) == mesh.b.address

    with mesh.b.bridge.imap(login("bob")) as imap:
        assert messages.message_index(imap) == before
        assert "\\Flagged" in fetch_flags(imap, uid)
        messages.check_delivered(fetch_body(imap, uid), message, received=2, return_path=mesh.alice)

    # users survive (bob can still submit) and the mesh hop works again in both directions
    after, after_id = make_message(mesh.bob, [mesh.alice], "after the restart", "still here\n")
    with mesh.b.bridge.smtp(login("bob")) as smtp:
        send(smtp, mesh.bob, [mesh.alice], after)
    deliver_and_check(mesh.a, "alice", after, after_id, sender=mesh.bob)
    again, again_id = make_message(mesh.alice, [mesh.bob], "welcome back", "hi again\n")
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [mesh.bob], again)
    deliver_and_check(mesh.b, "bob", again, again_id, sender=mesh.alice)


def test_mail_to_a_stopped_node_is_queued_and_delivered_when_it_returns(mesh: Mesh) -> None:
    mesh.b.bridge.stop()
    try:
        message, mid = make_message(mesh.alice, [mesh.bob], "while you were away", BODY)
        with mesh.a.bridge.smtp(login("alice")) as smtp:
            send(smtp, mesh.alice, [mesh.bob], message)  # accepted: committed to A's queue
    finally:
        mesh.b.bridge.start()
    deliver_and_check(mesh.b, "bob", message, mid, sender=mesh.alice)


def test_unknown_remote_user_bounces_to_the_sender(mesh: Mesh) -> None:
    nobody = mesh.b.bridge.address_of("nobody")
    message, mid = make_message(mesh.alice, [nobody], "to nobody", "is anyone there?\n")
    with mesh.a.bridge.smtp(login("alice")) as smtp:
        send(smtp, mesh.alice, [nobody], message)  # A cannot know B's users: accepted, then bounced
    with mesh.a.bridge.imap(login("alice")) as imap:
        _, report = messages.wait_for_body(
            imap,
            lambda body: mid.encode() in body and b"multipart/report" in body.lower(),
            what=f"a delivery status notification for {mid}",
            timeout=20,
        )
    assert b"report-type=delivery-status" in report.lower().replace(b'"', b"")
    assert b"nobody@" in report

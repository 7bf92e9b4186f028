"""RFC 3461 delivery status notification requests: what a sender asked to be told, and the ESMTP
parameters that carry the request (``MAIL FROM ... RET= ENVID=``, ``RCPT TO ... NOTIFY= ORCPT=``).

The SMTP servers parse the parameters with :func:`parse_mail_params` and :func:`parse_rcpt_params`
(a ValueError means ``501 5.5.4``) and hand the :class:`DsnRequest` to the Intake; the queue keeps
it with the message, and the SMTP client passes it on to a next hop that advertises DSN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SUCCESS, FAILURE, DELAY, NEVER = "SUCCESS", "FAILURE", "DELAY", "NEVER"
FULL, HDRS = "FULL", "HDRS"
#: RFC 3461 section 4.1: without NOTIFY, a sender is told of failures and (at the MTA's choice) delays.
DEFAULT_EVENTS = frozenset({FAILURE, DELAY})
_XCHAR_OK = re.compile(r"[!-*,-<>-~]")  # printable ASCII except "+" and "="
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")
MAX_ENVID = 100  # RFC 3461 section 4.4


def xtext_encode(text: str) -> str:
    """RFC 3461 section 4: ``+XX`` for "+", "=", and anything outside printable ASCII (as UTF-8)."""
    return "".join(
        ch if _XCHAR_OK.fullmatch(ch) else "".join(f"+{b:02X}" for b in ch.encode()) for ch in text
    )


def xtext_decode(text: str) -> str:
    """The text an xtext value stands for; ValueError if it is not xtext or stands for control
    characters (which would end up in the header fields of a report)."""
    if any(not (_XCHAR_OK.fullmatch(ch) or ch == "+") for ch in text) or re.search(
        r"\+(?![0-9A-F]{2})", text
    ):
        raise ValueError(f"not xtext: {text!r}")
    raw = _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")
    if any(byte < 0x20 or byte == 0x7F for byte in raw):
        raise ValueError("xtext must not encode control characters")
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Notify:
    """One recipient's request: ``NOTIFY`` events (empty: none given) and ``ORCPT``."""

    events: frozenset[str] = frozenset()
    orcpt: str | None = None  # "rfc822;alice@..." (decoded)

    def wants(self, event: str) -> bool:
        """Whether the sender is to be told of ``event`` (SUCCESS, FAILURE or DELAY)."""
        return event in (self.events or DEFAULT_EVENTS)

    def params(self) -> str:
        """The RCPT TO parameters for a next hop that advertises DSN (with a leading space)."""
        text = f" NOTIFY={','.join(sorted(self.events))}" if self.events else ""
        if self.orcpt:
            kind, _, address = self.orcpt.partition(";")
            text += f" ORCPT={kind};{xtext_encode(address)}"
        return text


@dataclass(frozen=True)
class DsnRequest:
    """A message's whole request: ``RET`` and ``ENVID`` from MAIL FROM, a :class:`Notify` per
    recipient (keyed by the recipient as queued, ``str(MailAddress)``) from RCPT TO."""

    ret: str | None = None
    envid: str | None = None
    recipients: Mapping[str, Notify] = field(default_factory=dict)

    def notify(self, recipient: str) -> Notify:
        """What ``recipient``'s sender asked for (the default if nothing)."""
        return self.recipients.get(recipient, Notify())

    def mail_params(self) -> str:
        """The MAIL FROM parameters for a next hop that advertises DSN (with a leading space)."""
        text = f" RET={self.ret}" if self.ret else ""
        return text + (f" ENVID={xtext_encode(self.envid)}" if self.envid else "")


NO_REQUEST = DsnRequest()


def _pairs(params: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        key = key.upper()
        if key in found:
            raise ValueError(f"{key} given twice")
        found[key] = value if sep else ""
    return found


def parse_mail_params(params: Sequence[str]) -> tuple[str | None, str | None]:
    """(RET, ENVID) from MAIL FROM parameters (others are ignored here); ValueError if malformed."""
    pairs = _pairs(params)
    ret = pairs.get("RET")
    if ret is not None and ret.upper() not in (FULL, HDRS):
        raise ValueError("RET must be FULL or HDRS")
    envid = pairs.get("ENVID")
    if envid is not None:
        envid = xtext_decode(envid)
        if not envid or len(envid) > MAX_ENVID:
            raise ValueError(f"ENVID must be 1 to {MAX_ENVID} characters")
    return (ret.upper() if ret else None), envid


def parse_rcpt_params(params: Sequence[str]) -> Notify:
    """NOTIFY and ORCPT from RCPT TO parameters (others are ignored here); ValueError if malformed."""
    pairs = _pairs(params)
    events: frozenset[str] = frozenset()
    if "NOTIFY" in pairs:
        events = frozenset(word.upper() for word in pairs["NOTIFY"].split(","))
        if not events or not events <= {SUCCESS, FAILURE, DELAY, NEVER}:
            raise ValueError("NOTIFY takes NEVER, or SUCCESS, FAILURE and DELAY separated by commas")
        if NEVER in events and len(events) > 1:
            raise ValueError("NOTIFY=NEVER cannot be combined with other values")
    orcpt = pairs.get("ORCPT")
    if orcpt is not None:
        kind, sep, address = orcpt.partition(";")
        if not sep or not kind or not address:
            raise ValueError("ORCPT must be addr-type;xtext, e.g. rfc822;alice@...")
        orcpt = f"{kind.lower()};{xtext_decode(address)}"
    return Notify(events, orcpt)


def encode_events(notify: Notify) -> str | None:
    """How the queue stores NOTIFY (None: not given)."""
    return ",".join(sorted(notify.events)) or None


def decode_events(text: str | None) -> frozenset[str]:
    """The set of event names stored as comma-separated text (empty for None or '')."""
    return frozenset(text.split(",")) if text else frozenset()

"""SMTP command lines, MAIL/RCPT paths and their parameters as values (pure functions).

Every refusal is a :class:`Refused` carrying the exact reply, with an RFC 3463 enhanced status
code, so the protocol never has to invent one. Parsing is strict and bounded: a path is at most
:data:`MAX_PATH` octets (RFC 5321 section 4.5.3.1.3), ``SIZE=`` at most :data:`MAX_SIZE_DIGITS`
digits, and a parameter that was not advertised is answered ``555 5.5.4`` (RFC 5321 section 4.1.1.11).
DSN parameters (RFC 3461) are checked by :mod:`ygbridge.notify`; a path may hold UTF-8 only after
``MAIL FROM:<...> SMTPUTF8`` (RFC 6531), else it is answered ``553 5.6.7`` (section 3.7.4.1).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from ygbridge.addressing import MailAddress
from ygbridge.errors import YgbridgeError
from ygbridge.notify import Notify, parse_mail_params, parse_rcpt_params

MAX_PATH = 256
MAX_SIZE_DIGITS = 20
#: Longest reply text sent (a reply line is at most 512 octets, RFC 5321 section 4.5.3.1.5).
MAX_TEXT = 400

_VERB = re.compile(rb"[A-Za-z]{1,16}\Z")
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]{0,31})(?:=([\x21-\x3c\x3e-\x7e]{1,500}))?\Z")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_C1_CONTROLS = re.compile("[\x80-\x9f]")


@dataclass(frozen=True)
class Reply:
    """One single-line SMTP reply; ``enhanced`` is None only where RFC 2034 has none (220, 334, 354)."""

    code: int
    enhanced: str | None
    text: str

    def encode(self) -> bytes:
        """The reply line with CRLF; the text is cut to :data:`MAX_TEXT` printable ASCII characters."""
        text = _UNPRINTABLE.sub("?", self.text[:MAX_TEXT])
        head = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{head} {text}\r\n".encode("ascii")


class Refused(YgbridgeError):
    """A command is answered with ``reply`` instead of going ahead."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.reply = Reply(code, enhanced, text)


@dataclass(frozen=True)
class Command:
    """A command line: ``verb`` in upper case (empty when the line has none), and its argument."""

    verb: str
    arg: bytes


def parse_command(line: bytes) -> Command:
    """Split a command line (without CRLF) into verb and argument."""
    verb, _, arg = line.partition(b" ")
    if not _VERB.match(verb):
        return Command("", line)
    return Command(verb.decode("ascii").upper(), arg.strip(b" "))


@dataclass(frozen=True)
class Path:
    """A reverse- or forward-path as the client wrote it; ``text`` is empty for ``<>``."""

    text: str

    def address(self) -> MailAddress:
        """The mesh mail address this path names (AddressError if it names none)."""
        return MailAddress.parse(self.text)

    def __str__(self) -> str:
        return f"<{self.text}>"


@dataclass(frozen=True)
class MailParams:
    """The MAIL FROM parameters understood here (RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 AUTH,
    RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID, the latter xtext-decoded)."""

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None


def _path(arg: bytes, keyword: bytes, enhanced: str) -> tuple[bytes, bytes]:
    """The raw path and the parameter part of ``FROM:<path> params`` / ``TO:<path> params``."""
    syntax = Refused(501, "5.5.4", f"Syntax: {keyword.decode()}:<address> [parameters]")
    if arg[: len(keyword) + 1].upper() != keyword + b":":
        raise syntax
    rest = arg[len(keyword) + 1 :].lstrip(b" ")
    if rest.startswith(b"<"):
        end = rest.find(b">")
        if end < 0:
            raise syntax
        raw, params = rest[1:end], rest[end + 1 :]
        if params and not params.startswith(b" "):
            raise syntax
    else:
        raw, _, params = rest.partition(b" ")
        if not raw:
            raise syntax
    if len(raw) > MAX_PATH:
        raise Refused(501, enhanced, f"Address longer than {MAX_PATH} characters")
    if any(byte <= 0x20 or byte == 0x7F or byte in b"<>" for byte in raw):
        raise Refused(501, enhanced, "Bad character in address")
    if raw.startswith(b"@"):  # a source route (RFC 5321 section 4.1.1.3): accepted and ignored
        _route, colon, raw = raw.partition(b":")
        if not colon or not raw:
            raise syntax
    return raw, params


def _text(raw: bytes, smtputf8: bool, enhanced: str) -> str:
    """The path as text: ASCII, or UTF-8 once the transaction asked for SMTPUTF8 (RFC 6531)."""
    if raw.isascii():
        return raw.decode("ascii")
    if not smtputf8:
        raise Refused(553, "5.6.7", "Non-ASCII addresses need the SMTPUTF8 parameter on MAIL FROM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(501, enhanced, "Address is not valid UTF-8") from None
    if _C1_CONTROLS.search(text):
        raise Refused(501, enhanced, "Bad character in address")
    return text


def _dsn_params(params: dict[str, str | None], keys: tuple[str, ...]) -> list[str]:
    """The DSN parameters among ``params`` as ``KEY=value`` words for :mod:`ygbridge.notify`."""
    return [f"{key}={params[key] or ''}" for key in keys if key in params]


def _params(text: bytes) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for word in text.split(b" "):
        if not word:
            continue
        match = _PARAM.match(word)
        if match is None:
            raise Refused(501, "5.5.4", "Bad parameter syntax")
        key = match.group(1).decode("ascii").upper()
        if key in params:
            raise Refused(501, "5.5.4", f"Parameter {key} given twice")
        value = match.group(2)
        params[key] = value.decode("ascii") if value is not None else None
    return params


def _unsupported(key: str) -> Refused:
    return Refused(555, "5.5.4", f"Parameter {key} is not supported here")


def parse_mail(arg: bytes, max_size: int, auth_offered: bool = False) -> tuple[Path, MailParams]:
    """The reverse-path and parameters of ``MAIL FROM:<path> [SIZE=n] [BODY=...] [AUTH=...]
    [SMTPUTF8] [RET=...] [ENVID=...]``."""
    raw, rest = _path(arg, b"FROM", "5.1.7")
    params = _params(rest)
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > MAX_SIZE_DIGITS:
                raise Refused(501, "5.5.4", "SIZE must be a number of octets")
            size = int(value)
            if size > max_size:
                raise Refused(552, "5.3.4", f"Message size exceeds the limit of {max_size} bytes")
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                raise Refused(501, "5.5.4", "BODY must be 7BIT or 8BITMIME")
            body = value.upper()
        elif key == "SMTPUTF8":
            if value is not None:
                raise Refused(501, "5.5.4", "SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "AUTH" and auth_offered and value is not None:
            pass  # RFC 4954 section 5: the submitter's identity; the login decides here
        elif key not in ("RET", "ENVID"):
            raise _unsupported(key)
    try:
        ret, envid = parse_mail_params(_dsn_params(params, ("RET", "ENVID")))
    except ValueError as exc:
        raise Refused(501, "5.5.4", str(exc)) from None
    text = _text(raw, smtputf8, "5.1.7")
    return Path(text), MailParams(size, body, smtputf8, ret, envid)


def parse_rcpt(arg: bytes, smtputf8: bool = False) -> tuple[Path, Notify]:
    """The forward-path of ``RCPT TO:<path> [NOTIFY=...] [ORCPT=...]`` and its DSN request;
    ``smtputf8``: the transaction's MAIL FROM had the SMTPUTF8 parameter."""
    raw, rest = _path(arg, b"TO", "5.1.3")
    if not raw:
        raise Refused(501, "5.1.3", "A recipient address is required")
    params = _params(rest)
    for key in params:
        if key not in ("NOTIFY", "ORCPT"):
            raise _unsupported(key)
    try:
        notify = parse_rcpt_params(_dsn_params(params, ("NOTIFY", "ORCPT")))
    except ValueError as exc:
        raise Refused(501, "5.5.4", str(exc)) from None
    return Path(_text(raw, smtputf8, "5.1.3")), notify


def parse_bdat(arg: bytes) -> tuple[int, bool]:
    """Chunk size and LAST flag of ``BDAT <octets> [LAST]`` (RFC 3030)."""
    size, _, last = arg.partition(b" ")
    if not size.isdigit() or len(size) > MAX_SIZE_DIGITS or last.strip(b" ").upper() not in (b"", b"LAST"):
        raise Refused(501, "5.5.4", "Syntax: BDAT <octets> [LAST]")
    return int(size), bool(last.strip(b" "))


def decode_sasl(line: bytes) -> bytes:
    """A client's base64 SASL response (RFC 4954 section 4): ``=`` is empty, ``*`` cancels."""
    if line == b"*":
        raise Refused(501, "5.7.0", "Authentication cancelled")
    if line == b"=":
        return b""
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error:
        raise Refused(501, "5.5.2", "Cannot decode the response: not base64") from None


def plain_credentials(message: bytes) -> tuple[bytes, bytes]:
    """User name and password of a SASL PLAIN message ``[authzid] NUL authcid NUL passwd`` (RFC 4616)."""
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise Refused(501, "5.5.2", "Malformed PLAIN response")
    authzid, user, password = parts
    if authzid and authzid != user:
        raise Refused(535, "5.7.8", "Authentication credentials invalid")
    return user, password

"""Messages as IMAP serves them: sections are cut from the raw bytes, never re-encoded."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import re
from collections.abc import Collection, Sequence
from functools import cached_property, lru_cache
from io import BytesIO
from typing import Any

from twisted.mail.imap4 import IMessagePart, getEnvelope
from zope.interface import implementer

from ygbridge.message import field_value, header_fields, split_message
from ygbridge.store.messages import StoredMessage

_PARSER = email.parser.HeaderParser(policy=email.policy.compat32)


def _wanted(names: Collection[bytes]) -> frozenset[bytes]:
    return frozenset(name.strip(b'"').lower() for name in names)


@lru_cache(maxsize=64)
def _fields_pattern(names: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """Fields named ``names`` (any case) with their continuation lines, as header_fields cuts them."""
    alternatives = b"|".join(re.escape(name) for name in sorted(_wanted(names)))
    line = rb"[^\n]*(?:\n|\Z)"
    return re.compile(
        rb"^(?:" + alternatives + rb")[ \t]*:" + line + rb"(?:[ \t]" + line + rb")*", re.I | re.M
    )


def select_fields(header: bytes, names: Collection[bytes], negate: bool) -> bytes:
    """The raw fields named in ``names`` (all others if ``negate``), then the blank line."""
    if not negate:  # one regular expression over the header: most header fetches (Delta Chat's)
        return b"".join(_fields_pattern(tuple(names)).findall(header)) + b"\r\n"
    wanted = _wanted(names)
    return b"".join(raw for name, raw in header_fields(header) if name not in wanted) + b"\r\n"


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The raw body parts between ``--boundary`` lines (RFC 2046 5.1.1)."""
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start : match.start()])
        if match.group(1):
            return parts
        start = match.end()
    if start is not None:  # no close delimiter: the last part runs to the end
        parts.append(body[start:])
    return parts


@implementer(IMessagePart)
class MimeEntity:
    """A message or body part over its raw bytes (``getSize`` is that of the body)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.header, self.body = split_message(raw)

    @cached_property
    def info(self) -> email.message.Message:
        """The header parsed by the email package (for MIME types and parameters)."""
        return _PARSER.parsestr(self.header.decode("utf-8", "replace"))

    @cached_property
    def children(self) -> list[MimeEntity]:
        """Sub-parts as IMAP numbers them: multipart parts, else the entity itself."""
        if self.info.get_content_maintype() != "multipart":
            return [self]
        boundary = self.info.get_boundary()
        if not boundary or not boundary.isascii():
            return []
        return [MimeEntity(part) for part in _split_parts(self.body, boundary.encode("ascii"))]

    @property
    def is_rfc822(self) -> bool:
        """Whether this part encapsulates a message (message/rfc822)."""
        return self.info.get_content_type() == "message/rfc822"

    def part(self, numbers: Sequence[int]) -> MimeEntity | None:
        """The body part with these (zero-based) part numbers, if there is one."""
        entity = self
        for number in numbers:
            children = (MimeEntity(entity.body) if entity.is_rfc822 else entity).children
            if number >= len(children):
                return None
            entity = children[number]
        return entity

    def section(self, numbers: Sequence[int], kind: str, fields: Collection[bytes] = ()) -> bytes | None:
        """A FETCH BODY[] section: ``kind`` is "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME.

        None when the section does not exist.
        """
        entity = self.part(numbers)
        if entity is None:
            return None
        if kind == "MIME":
            return entity.header if numbers else None
        if kind == "":
            return entity.body if numbers else entity.raw
        if numbers:  # HEADER* and TEXT of a part: that of the message it encapsulates
            if not entity.is_rfc822:
                return None
            entity = MimeEntity(entity.body)
        if kind == "TEXT":
            return entity.body
        if kind == "HEADER":
            return entity.header
        return select_fields(entity.header, fields, negate=kind == "HEADER.FIELDS.NOT")

    def getHeaders(self, negate: bool, *names: str | bytes) -> dict[str, str]:
        """Unfolded header values by lowercase name (first of repeated fields).

        Values keep undecodable bytes as surrogates: encode with ``surrogateescape``.
        """
        wanted = {(n.decode("ascii") if isinstance(n, bytes) else n).lower() for n in names}
        headers: dict[str, str] = {}
        for name, raw in header_fields(self.header):
            key = name.decode("ascii", "surrogateescape")
            if (key in wanted) != negate and key not in headers:
                headers[key] = field_value(raw).decode("utf-8", "surrogateescape")
        return headers

    def getBodyFile(self) -> BytesIO:
        return BytesIO(self.body)

    def getSize(self) -> int:
        return len(self.body)

    def isMultipart(self) -> bool:
        return self.info.get_content_maintype() == "multipart"

    def getSubPart(self, part: int) -> MimeEntity:
        if self.is_rfc822:
            return MimeEntity(self.body)
        return self.children[part]


def _line_count(body: bytes) -> int:
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def body_structure(entity: MimeEntity, extended: bool) -> list[Any]:
    """The BODY (or, ``extended``, BODYSTRUCTURE) of RFC 3501 7.4.2, with str leaves."""
    info = entity.info
    header = entity.getHeaders(False, "content-id", "content-description", "content-transfer-encoding")

    def parameters(name: str) -> list[str] | None:
        default = [("text/plain", ""), ("charset", "us-ascii")] if name == "content-type" else []
        params = info.get_params(header=name) or default
        pairs = [(key, email.utils.collapse_rfc2231_value(value)) for key, value in params[1:] if key]
        return [item for pair in pairs for item in pair] or None

    def tail() -> list[Any]:
        disposition = info.get_params(header="content-disposition")
        more = entity.getHeaders(False, "content-md5", "content-language", "content-location")
        return [
            *([] if entity.isMultipart() else [more.get("content-md5")]),
            [disposition[0][0], parameters("content-disposition")] if disposition else None,
            more.get("content-language"),
            more.get("content-location"),
        ]

    if entity.isMultipart() and entity.children:
        parts: list[Any] = [body_structure(child, extended) for child in entity.children]
        extension = [parameters("content-type"), *tail()] if extended else []
        return [*parts, info.get_content_subtype(), *extension]
    result: list[Any] = [
        info.get_content_maintype(),
        info.get_content_subtype(),
        parameters("content-type"),
        header.get("content-id"),
        header.get("content-description"),
        header.get("content-transfer-encoding", "7bit"),
        len(entity.body),
    ]
    if entity.is_rfc822:
        inner = MimeEntity(entity.body)
        result += [getEnvelope(inner), body_structure(inner, extended), _line_count(entity.body)]
    elif info.get_content_maintype() == "text":
        result.append(_line_count(entity.body))
    return result + (tail() if extended else [])


class ImapMessage:
    """A stored message as FETCH sees it (and Twisted's ``getEnvelope``, through getHeaders)."""

    def __init__(self, stored: StoredMessage) -> None:
        self.stored = stored

    @cached_property
    def entity(self) -> MimeEntity:
        """The message as a MIME entity (only for messages loaded with their body)."""
        assert self.stored.body is not None, "message loaded without its body"
        return MimeEntity(self.stored.body)

    def getHeaders(self, negate: bool, *names: str | bytes) -> dict[str, str]:
        return self.entity.getHeaders(negate, *names)

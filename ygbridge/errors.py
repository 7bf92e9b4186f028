"""The one error hierarchy of ygbridge; messages are written for the person who reads them."""


class YgbridgeError(Exception):
    """Base of every error ygbridge raises on purpose."""


class AddressError(YgbridgeError, ValueError):
    """A key, address, domain or mail address that is not valid on the mesh."""


class ConfigError(YgbridgeError):
    """The configuration file is missing, unreadable or has a bad value."""


class RouterError(YgbridgeError):
    """The yggdrasil router answered with an error or cannot be used."""


class RouterRequestError(RouterError):
    """The router answered a request with ``status: error``."""

    def __init__(self, request: str, message: str) -> None:
        super().__init__(f"yggdrasil refused {request}: {message}")
        self.request = request
        self.message = message


class RouterConnectionLost(RouterError):
    """The admin connection closed while a request was waiting for its answer."""


class TunDisabled(RouterError):
    """The router runs without a TUN interface, so no mail can cross the mesh."""


class UserError(YgbridgeError):
    """A user account operation that cannot be done (exists, missing, bad name)."""


class MailboxError(YgbridgeError):
    """A mailbox operation that cannot be done (name taken, reserved or invalid)."""


class MailboxLimitReached(MailboxError):
    """The user has as many mailboxes as ``[limits] mailboxes_per_user`` allows.

    Its text starts with the IMAP response code (RFC 5530), so ``NO`` + text is the answer.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"[LIMIT] at most {limit} mailboxes per user; delete some first")
        self.limit = limit


class NoSuchMailbox(MailboxError):
    """The user has no mailbox of that name (or the user does not exist)."""


class RouterReplyError(RouterError):
    """The router sent something that is not a well-formed admin socket answer."""


class RouterTimeout(RouterError):
    """The router accepted a request but did not answer it in time."""


class RouterUnreachable(RouterError):
    """None of the admin sockets tried accepted a connection."""

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        tried = "; ".join(f"{uri} ({reason})" for uri, reason in attempts)
        super().__init__(
            f"cannot reach the yggdrasil admin socket, tried: {tried}. Is yggdrasil running, "
            "may this user open its admin socket, and does [yggdrasil] admin match its AdminListen?"
        )
        self.uris = tuple(uri for uri, _ in attempts)


class LoginThrottled(YgbridgeError):
    """Too many failed logins from this source or for this user: refused for a while, unchecked."""


class SenderMismatch(YgbridgeError):
    """A message's visible sender (From:, Sender:) is not one the connection may send as."""


class BadCommand(YgbridgeError):
    """A client command that does not follow the protocol's grammar (IMAP answers ``BAD``)."""


class MessageTooBig(MailboxError):
    """A message larger than the node takes (IMAP answers ``NO [TOOBIG]``, RFC 7889)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"[TOOBIG] messages are limited to {limit} octets here")


class QuotaExceeded(YgbridgeError):
    """A sending node has used up its hourly allowance of messages or bytes."""


class InsufficientStorage(YgbridgeError):
    """The database's filesystem is below its free-space floor: mail must wait."""

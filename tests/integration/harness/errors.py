"""The harness's errors: a lab that could not be set up, a bounded wait that ran out, a daemon gone."""

from __future__ import annotations


class HarnessError(Exception):
    """The test environment could not be set up or a bounded wait ran out."""


class ProcessExited(HarnessError):
    """A daemon the harness waits for has exited: waiting longer is pointless."""


class BridgeStartError(HarnessError):
    """The bridge exited (or never said it was ready)."""

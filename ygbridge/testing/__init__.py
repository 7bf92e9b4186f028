"""Test doubles and builders shared by ygbridge's unit tests and benchmarks (as Twisted ships
:mod:`twisted.internet.testing`); not used by the service itself.

- :mod:`.store`: a fresh migrated database, users and messages made straight through the store,
  and ``ImmediateDB``, a DB runner that runs store calls at once;
- :mod:`.deferreds`: the result or failure of a Deferred that has already fired;
- :mod:`.imap`: the IMAP server over the store, and a client driving it through StringTransport;
- :mod:`.transports`: ``CountingTransport``, for answers too large to keep;
- :mod:`.messages`: numbered generated messages and an INBOX filled with them;
- :mod:`.postgresql`: a throwaway PostgreSQL server for the store tests;
- :mod:`.router`: ``FakeRouter``, the router's side of the admin socket on a MemoryReactorClock;
- :mod:`.delivery`: ``FakePeer``, a scripted peer node for the queue runner.
"""

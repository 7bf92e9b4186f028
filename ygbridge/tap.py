"""twistd entry point: ``twistd -n ygbridge --config FILE``."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from ygbridge.config import DEFAULT_CONFIG, Config, load_config
from ygbridge.errors import ConfigError


class Options(usage.Options):
    """Command-line options of the twistd plugin."""

    optParameters = [["config", "c", DEFAULT_CONFIG, "Configuration file (INI)."]]

    def postOptions(self) -> None:
        try:
            self.loaded: Config = load_config(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None


def makeService(options: Options) -> IService:
    """The whole node: store, router link, listeners and the queue runner."""
    from twisted.internet import reactor

    from ygbridge.memory import return_large_blocks
    from ygbridge.store.drivers import load_only_for

    load_only_for(options.loaded.database)  # before anything imports peewee
    return_large_blocks()

    from ygbridge import logs
    from ygbridge.node import NodeService
    from ygbridge.store.db import connect

    logs.configure(options.loaded.log_level)
    try:
        connect(options.loaded.database, options.loaded.base_dir)
        return NodeService(reactor, options.loaded)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None

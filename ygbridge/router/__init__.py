"""The link to the yggdrasil router's admin socket: wire protocol, parsed state, the held connection."""

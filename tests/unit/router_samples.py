"""Admin socket answers captured from real routers, byte for byte (yggdrasil 0.4.7 as Debian
ships it, and 0.5.12), two nodes peered over loopback in a network namespace. The requests
were sent in lower case, which 0.5 echoes as sent.

0.4.7 node: key 91f0e5b2..., 200:dc1e:349b:33a7:b639:5a9:d652:c961; its peer 203:5bb3:...
0.5.12 node: key 99098b4a..., 200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7; its peer 200:62db:...
"""

from __future__ import annotations

import json
from typing import Any

V047_SELF = b"""{
  "status": "success",
  "request": null,
  "response": {
    "build_name": "unknown",
    "build_version": "unknown",
    "key": "91f0e5b2662c24e37d2b14d69b4f57c8c438a3bb1f22dbe158731fed6451c408",
    "address": "200:dc1e:349b:33a7:b639:5a9:d652:c961",
    "coords": [
      1
    ],
    "subnet": "300:dc1e:349b:33a7::/64"
  }
}
"""

V047_PEERS = b"""{
  "status": "success",
  "request": null,
  "response": {
    "peers": [
      {
        "address": "203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63",
        "key": "1a44c7a1a530c256684f5de42239cf071816f00c4d18657ceaa0c752300d18e4",
        "port": 1,
        "priority": 0,
        "coords": [],
        "remote": "tcp://127.0.0.1:38190",
        "bytes_recvd": 695,
        "bytes_sent": 1242,
        "uptime": 5.6013593440000005
      }
    ]
  }
}
"""

V047_SESSIONS = b"""{
  "status": "success",
  "request": null,
  "response": {
    "sessions": [
      {
        "address": "203:5bb3:85e5:acf3:da99:7b0a:21bd:dc63",
        "key": "1a44c7a1a530c256684f5de42239cf071816f00c4d18657ceaa0c752300d18e4",
        "bytes_recvd": 0,
        "bytes_sent": 250,
        "uptime": 2.710994335
      }
    ]
  }
}
"""

V047_TUN = b"""{
  "status": "success",
  "request": null,
  "response": {
    "enabled": true,
    "name": "tun0",
    "mtu": 53049
  }
}
"""

V047_TUN_DISABLED = b"""{
  "status": "success",
  "request": null,
  "response": {
    "enabled": false
  }
}
"""

V047_UNKNOWN = b"""{
  "status": "error",
  "error": "Unknown action 'nosuch', try 'list' for help",
  "request": null,
  "response": null
}
"""

V0512_SELF = b"""{
  "status": "success",
  "request": {
    "request": "getself",
    "arguments": {},
    "keepalive": true
  },
  "response": {
    "build_name": "yggdrasil",
    "build_version": "0.5.12",
    "key": "99098b4ac8f782f105094bba691c62dee5e63d1ab7b2dfe24c7c31349b4b4ab4",
    "address": "200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7",
    "routing_entries": 2,
    "subnet": "300:cdec:e96a:6e10::/64"
  }
}
"""

# From the other 0.5.12 node: one configured peer is down (key "", no address), one is up.
V0512_PEERS = b"""{
  "status": "success",
  "request": {
    "request": "getpeers",
    "arguments": {},
    "keepalive": true
  },
  "response": {
    "peers": [
      {
        "remote": "tcp://127.0.0.1:1",
        "up": false,
        "inbound": false,
        "key": "",
        "port": 0,
        "priority": 0,
        "cost": 0,
        "last_error_time": 1365616434,
        "last_error": "dial tcp 127.0.0.1:1: connect: connection refused"
      },
      {
        "remote": "tcp://127.0.0.1:12346",
        "up": true,
        "inbound": false,
        "address": "200:cdec:e96a:6e10:fa1d:f5ed:688b:2dc7",
        "key": "99098b4ac8f782f105094bba691c62dee5e63d1ab7b2dfe24c7c31349b4b4ab4",
        "port": 1,
        "priority": 0,
        "cost": 1,
        "bytes_recvd": 2228,
        "bytes_sent": 1041,
        "rate_sent": 2,
        "uptime": 7.367045624,
        "latency": 630000
      }
    ]
  }
}
"""

V0512_SESSIONS = b"""{
  "status": "success",
  "request": {
    "request": "getsessions",
    "arguments": {},
    "keepalive": true
  },
  "response": {
    "sessions": [
      {
        "address": "200:62db:8a6:e435:b47e:8987:740f:d80",
        "key": "ce927bac8de525c0bb3c45f8793f8f99a98b98258ce9422dfac7047f1ec3b8c8",
        "bytes_recvd": 0,
        "bytes_sent": 250,
        "uptime": 2.687676764
      }
    ]
  }
}
"""

V0512_TUN = b"""{
  "status": "success",
  "request": {
    "request": "gettun",
    "arguments": {},
    "keepalive": true
  },
  "response": {
    "enabled": true,
    "name": "tun0",
    "mtu": 65535
  }
}
"""

V0512_TUN_DISABLED = b"""{
  "status": "success",
  "request": {
    "request": "gettun",
    "arguments": {},
    "keepalive": true
  },
  "response": {
    "enabled": false
  }
}
"""

V0512_UNKNOWN = b"""{
  "status": "error",
  "error": "Unknown action 'nosuch', try 'list' for help",
  "request": {
    "request": "nosuch",
    "arguments": {},
    "keepalive": true
  },
  "response": null
}
"""


def response(answer: bytes) -> Any:
    """The ``response`` member of a captured answer."""
    return json.loads(answer)["response"]

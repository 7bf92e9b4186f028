"""The fence around Twisted's private names (docs/twisted.md): ygbridge uses only Twisted's public API.

Every module of ygbridge is read with ``ast``. A finding is a private module imported
(``twisted.internet._sslverify``), a private name imported from Twisted, a subclass of a command
layer ygbridge owns (IMAP4Server, SMTP, ESMTP), or, in a module that imports the Twisted module
they belong to, one of the private names ygbridge used to rely on.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ygbridge"

#: Private names of the classes ygbridge used to subclass, by the Twisted module that has them.
PRIVATE_NAMES = {
    "twisted.mail.imap4": {
        "_respond",
        "_listWork",
        "_cbListWork",
        "_pendingLiteral",
        "_literalStringLimit",
        "_onLogout",
        "parseState",
        "_FetchParser",
        "_parseMbox",
        "_quote",
        "_needsLiteral",
        "_cbSelectWork",
        "_setupChallenge",
    },
    "twisted.mail.smtp": {
        "_cbFromValidate",
        "_cbToValidate",
        "_ebFromValidate",
        "_ebToValidate",
        "_messageHandled",
        "_from",
        "_to",
        "_helo",
        "_cbAnonymousAuthentication",
    },
    "twisted.protocols.basic": {"_buffer", "_busyReceiving"},
}
#: Command layers ygbridge owns: never subclassed.
OWNED_LAYERS = {"twisted.mail.imap4": {"IMAP4Server"}, "twisted.mail.smtp": {"SMTP", "ESMTP"}}


def _twisted_modules(tree: ast.Module) -> set[str]:
    """The Twisted modules a module imports (``from twisted.mail import smtp``: twisted.mail.smtp)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("twisted"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def findings(source: str, where: str) -> list[str]:
    """What in ``source`` crosses the fence, each as ``where:line: what``."""
    tree = ast.parse(source)
    imported = _twisted_modules(tree)
    private = set().union(*(names for module, names in PRIVATE_NAMES.items() if module in imported))
    owned = set().union(*(names for module, names in OWNED_LAYERS.items() if module in imported))
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            )
            for module in modules:
                if module.startswith("twisted") and any(part.startswith("_") for part in module.split(".")):
                    report(node, f"imports private module {module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        report(node, f"imports private name {alias.name} from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in private:
            report(node, f"uses Twisted's private {node.attr}")
        elif isinstance(node, ast.Name) and node.id in private:
            report(node, f"uses Twisted's private {node.id}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in private:
            report(node, f"overrides Twisted's private {node.name}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in owned:
                    report(node, f"{node.name} subclasses Twisted's {name}")
    return found


def _package_findings(smtp: bool) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if (relative.parts[1] == "smtp") == smtp:
            found += findings(path.read_text(encoding="utf-8"), str(relative))
    return found


def test_ygbridge_uses_no_twisted_private_name() -> None:
    assert _package_findings(smtp=False) == []


def test_smtp_uses_no_twisted_private_name() -> None:
    assert _package_findings(smtp=True) == []


def test_the_fence_finds_each_kind_of_crossing() -> None:
    source = (
        "from twisted.mail import imap4\n"
        "from twisted.internet._sslverify import OpenSSLCertificateOptions\n"
        "from twisted.mail.smtp import _x\n"
        "class Server(imap4.IMAP4Server):\n"
        "    def _respond(self, state, tag, message):\n"
        "        self._pendingLiteral = None\n"
        "        self.parseState = 'command'\n"
    )
    assert findings(source, "m.py") == [
        "m.py:2: imports private module twisted.internet._sslverify",
        "m.py:3: imports private name _x from twisted.mail.smtp",
        "m.py:4: Server subclasses Twisted's IMAP4Server",
        "m.py:5: overrides Twisted's private _respond",
        "m.py:6: uses Twisted's private _pendingLiteral",
        "m.py:7: uses Twisted's private parseState",
    ]
    # A module that does not import twisted.mail.smtp may have a _from of its own.
    assert findings("class A:\n    def f(self):\n        self._from = 1\n", "a.py") == []

"""LIST and LSUB patterns (RFC 3501 6.3.8): ``*`` matches anything, ``%`` anything but the delimiter.

A regular expression with several wildcards can backtrack for as long as the name is long to the
power of their number (``*a*a*a*b`` against a long run of ``a``), so a pattern is run here as a
small automaton over the name instead: one step per character, the steps remembered, whatever
the pattern.
"""

from __future__ import annotations

_STAR, _PERCENT = "*", "%"
#: Stands for every character that neither the pattern names nor is the delimiter.
_OTHER = ""
#: Steps remembered per pattern (a pattern has few states in practice; this bounds odd ones).
_CACHE = 4096


class MailboxPattern:
    """A LIST pattern (reference and mailbox name joined), matched in time linear in the name."""

    def __init__(self, pattern: str, delimiter: str) -> None:
        tokens: list[str] = []
        for char in pattern:
            if char in (_STAR, _PERCENT) and tokens and tokens[-1] in (_STAR, _PERCENT):
                tokens[-1] = _STAR if _STAR in (char, tokens[-1]) else _PERCENT  # ** %* *% are *
            else:
                tokens.append(char)
        self._tokens = tokens
        self._delimiter = delimiter
        self._literals = {token for token in tokens if token not in (_STAR, _PERCENT)} | {delimiter}
        self._accept = 1 << len(tokens)
        self._start = self._closure(1)
        self._steps: dict[tuple[int, str], int] = {}
        wildcard = next((i for i, token in enumerate(tokens) if token in (_STAR, _PERCENT)), len(tokens))
        #: The literal text every matching name starts with.
        self.prefix = "".join(tokens[:wildcard])

    def _closure(self, state: int) -> int:
        """Add the positions reached by letting a wildcard match nothing (wildcards never follow
        each other, so one pass does)."""
        for position, token in enumerate(self._tokens):
            if state >> position & 1 and token in (_STAR, _PERCENT):
                state |= 1 << (position + 1)
        return state

    def _step(self, state: int, char: str) -> int:
        after = 0
        for position, token in enumerate(self._tokens):
            if state >> position & 1:
                if token == _STAR or (token == _PERCENT and char != self._delimiter):
                    after |= 1 << position
                elif token == char:
                    after |= 1 << (position + 1)
        return self._closure(after)

    def matches(self, name: str) -> bool:
        """Whether the mailbox ``name`` matches the LIST pattern."""
        state = self._start
        steps = self._steps
        for char in name:
            if char not in self._literals:
                char = _OTHER
            key = (state, char)
            after = steps.get(key)
            if after is None:
                after = self._step(state, char)
                if len(steps) < _CACHE:
                    steps[key] = after
            state = after
            if not state:
                return False
        return bool(state & self._accept)

"""What a model wrote, shown so a person can see it: long runs of one character collapsed ("⏎ ×2000") and,
where asked, whitespace made visible. The app shows a malformed turn's raw text this way; the CLI streams
every turn through `RunCollapser`, so a turn of thousands of newlines prints one line, not a screenful.

`collapse_runs` is the rule; `RunCollapser` applies it to a stream of pieces and, fed any split of a text and
then flushed, gives exactly `collapse_runs` of the whole text (tests check this for arbitrary splits).
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterator

# A run of this many of one character (or more) becomes "<sign> ×N". Shorter runs are kept as they are.
MIN_RUN = 10
# Signs for whitespace, as editors show it; other invisible characters are shown by their code point.
SIGNS = {"\n": "⏎", "\t": "⇥", "\r": "␍", " ": "␠", "\f": "␌", "\v": "␋", "\u00a0": "⍽"}


def sign(char: str) -> str:
    """A visible stand-in for `char`: its sign, its code point when it is invisible, else the character."""
    if char in SIGNS:
        return SIGNS[char]
    if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
        return f"⟨U+{ord(char):04X}⟩"
    return char


def _shown(char: str, visible_whitespace: bool) -> str:
    """One character as it appears in a short run."""
    if not visible_whitespace or char == " ":
        return char  # spaces stay spaces: a long run of them is still collapsed
    if char == "\n":
        return "⏎\n"  # the sign, then the line break itself, so lines stay lines
    return sign(char)


def _run(char: str, count: int, min_run: int, visible_whitespace: bool) -> str:
    if count >= min_run:
        # A collapsed run of line breaks still ends its line, so what follows starts on a new one.
        return f"{sign(char)} ×{count}" + ("\n" if char == "\n" else "")
    return _shown(char, visible_whitespace) * count


def runs(text: str) -> Iterator[tuple[str, int]]:
    """(character, how many times in a row) for each run of `text`."""
    for char, group in itertools.groupby(text):
        yield char, sum(1 for _ in group)


def collapse_runs(text: str, *, min_run: int = MIN_RUN, visible_whitespace: bool = False) -> str:
    """`text` with every run of `min_run` or more of one character written "<sign> ×N"; with
    `visible_whitespace`, line breaks show as "⏎" (and still break the line), tabs as "⇥", and other
    invisible characters by their sign or code point."""
    return "".join(_run(char, count, min_run, visible_whitespace) for char, count in runs(text))


class RunCollapser:
    """`collapse_runs` over a stream: `feed` each piece, print what it returns, `flush` at the end.

    The current run is held back until a different character arrives (or `flush`), since only then is its
    length known: a run of 2000 line breaks prints nothing while it streams, then "⏎ ×2000"."""

    def __init__(self, *, min_run: int = MIN_RUN, visible_whitespace: bool = False) -> None:
        self.min_run = min_run
        self.visible_whitespace = visible_whitespace
        self._char = ""
        self._count = 0

    def feed(self, piece: str) -> str:
        out: list[str] = []
        for char, count in runs(piece):
            if char == self._char:
                self._count += count
                continue
            if self._count:
                out.append(_run(self._char, self._count, self.min_run, self.visible_whitespace))
            self._char, self._count = char, count
        return "".join(out)

    def flush(self) -> str:
        """What is held back (the last run); the collapser is then empty, ready for a new text."""
        out = _run(self._char, self._count, self.min_run, self.visible_whitespace) if self._count else ""
        self._char, self._count = "", 0
        return out

"""Text normalisation and block-list matching for prompts (pure, no Discord types).

Two normalisations:

* :func:`normalise_text` ("full") — NFKC (full-width and styled letters → plain), casefold, accents
  removed (NFKD, then combining diacritical marks dropped, then recomposed), invisible characters
  dropped (format characters such as U+200B/U+FEFF/soft hyphen, variation selectors, Hangul fillers,
  braille blank), and every separator, control character, punctuation mark and math/currency/modifier
  symbol removed. ``"b a d"``, ``"b.a.d"``, ``"ＢＡＤ"``, ``"b\\u200bad"``, ``"BÀD"`` all become ``"bad"``.
  Letters, digits, emoji and other "other symbols" stay. Script-specific marks (Japanese dakuten, Indic
  vowel signs …) are kept, so ``が`` does not turn into ``か``. Leetspeak and look-alike letters from
  other scripts (Cyrillic ``а``) are NOT folded.
* :func:`normalise_light` — the same, except that whitespace and punctuation stay, so words stay apart.

Block-list entries (see :func:`compile_pattern`):

* ``bad`` — plain entry: normalised like the prompt, matched as a substring of the fully normalised
  prompt. Spacing, punctuation, full-width letters, zero-width characters, case and accents do not
  bypass it. Because it is a substring match, ``ass`` also matches ``class`` and ``b*d`` can span words
  (``"big dog"`` → ``bigdog``).
* ``"ass"`` — quoted entry (straight, curly or full-width double quotes): matched only as whole word(s)
  on the lightly normalised prompt, so it matches ``"ASS!"`` but not ``"class"``. It can be bypassed by
  spacing the letters out; that is the price of not matching inside other words. Several words
  (``"bad word"``) must appear in that order separated only by spaces or punctuation. At an edge that
  is a CJK / Thai / Lao / Khmer / Myanmar / Hangul character there is no word boundary to test, so that
  edge matches inside a longer run of text (a quoted CJK entry behaves like a plain one).
* ``*`` — wildcard: any run of characters (possibly empty). In a plain entry it can cross words; in a
  quoted entry it stays inside one word (``"f*ck"``). A leading/trailing ``*`` in a plain entry is
  meaningless (it is a substring match anyway). An entry with nothing to match besides wildcards is
  invalid (:class:`ValueError`).

Matching cost is linear in the prompt length whatever the entry: the regexes use atomic groups
and leftmost matching (the leftmost occurrence of each wildcard segment is always the best choice).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "compile_pattern",
    "find_blocked",
    "is_whole_word",
    "normalise_light",
    "normalise_text",
]

_KEEP, _DROP, _DROP_FULL = 0, 1, 2

#: Combining diacritical marks (accents, Zalgo); script-specific marks are not in these blocks.
_DIACRITIC_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
#: Invisible or "default ignorable" characters that are not all in category Cf.
_INVISIBLE_RANGES = (
    (0x180B, 0x180F),  # Mongolian variation selectors / vowel separator
    (0x2060, 0x206F),  # word joiner, invisible operators, deprecated format chars
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement
)
_INVISIBLE_CHARS = frozenset({0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0})
#: Categories removed by the full normalisation only (separators, controls, punctuation, symbols
#: except "other symbol" such as emoji).
_FULL_ONLY_CATEGORIES = frozenset(
    {"Zs", "Zl", "Zp", "Cc", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sk", "Sc"}
)

#: Scripts written without spaces between words: no word boundary is tested at such an edge.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x3007),
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x31FF),  # Bopomofo, Hangul compatibility Jamo, Katakana ext.
    (0x3400, 0x4DBF),  # CJK ext. A
    (0x4E00, 0x9FFF),  # CJK unified
    (0xA960, 0xA97F),
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo ext. B
    (0xF900, 0xFAFF),  # CJK compatibility
    (0x20000, 0x3FFFF),  # CJK ext. B+
)

_MAX_PASSES = 4
#: Letters that casefolding leaves apart from their plain look-alike ("bıtch" → "bitch").
_FOLD_EXTRA = str.maketrans({"ı": "i", "ȷ": "j"})
_QUOTE_PAIRS = (('"', '"'), ("“", "”"), ("”", "”"), ("„", "“"), ("“", "“"))


def _in_ranges(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


@lru_cache(maxsize=65536)
def _char_class(ch: str) -> int:
    cp = ord(ch)
    category = unicodedata.category(ch)
    if (
        category in ("Cf", "Cs")
        or cp in _INVISIBLE_CHARS
        or _in_ranges(cp, _DIACRITIC_RANGES)
        or _in_ranges(cp, _INVISIBLE_RANGES)
    ):
        return _DROP
    if category in _FULL_ONLY_CATEGORIES:
        return _DROP_FULL
    return _KEEP


def _fold_once(text: str, full: bool) -> str:
    folded = unicodedata.normalize(
        "NFKD", unicodedata.normalize("NFKC", text).casefold().translate(_FOLD_EXTRA)
    )
    if full:
        kept = "".join(ch for ch in folded if _char_class(ch) == _KEEP)
    else:
        kept = "".join(ch for ch in folded if _char_class(ch) != _DROP)
    return unicodedata.normalize("NFC", kept)


def _fold(text: str, full: bool) -> str:
    # NFKC and casefolding do not commute for a handful of characters; repeat to a fixed point so
    # the result is idempotent (one extra pass is almost always enough).
    current = _fold_once(text, full)
    for _ in range(_MAX_PASSES):
        again = _fold_once(current, full)
        if again == current:
            break
        current = again
    return current


def normalise_text(text: str) -> str:
    """Fully normalised text for block-list matching: ``"B.a\\u200bd  Ｗｏｒｄ"`` → ``"badword"``."""
    return _fold(text, full=True)


def normalise_light(text: str) -> str:
    """Like :func:`normalise_text` but whitespace and punctuation stay (for whole-word entries)."""
    return _fold(text, full=False)


def _unquote(entry: str) -> tuple[bool, str]:
    stripped = unicodedata.normalize("NFKC", entry).strip()
    if len(stripped) >= 2:
        for left, right in _QUOTE_PAIRS:
            if stripped.startswith(left) and stripped.endswith(right):
                return True, stripped[len(left) : -len(right)]
    return False, stripped


def _no_space_script(ch: str) -> bool:
    return _in_ranges(ord(ch), _NO_SPACE_RANGES)


def _compile_substring(body: str) -> re.Pattern[str]:
    segments = [normalise_text(part) for part in body.split("*")]
    segments = [s for s in segments if s]
    if not segments:
        raise ValueError("block-list entry has nothing to match")
    if len(segments) == 1:
        return re.compile(re.escape(segments[0]))
    # \A + atomic "earliest occurrence" groups: the leftmost match of each segment is optimal, so no
    # backtracking is ever needed and matching stays linear.
    return re.compile(r"\A" + "".join(f"(?>.*?{re.escape(s)})" for s in segments), re.DOTALL)


def _compile_words(body: str) -> re.Pattern[str]:
    light = normalise_light(body)
    tokens = [re.sub(r"\*+", "*", tok) for tok in re.findall(r"[\w*]+", light)]
    if not tokens or all(tok == "*" for tok in tokens):
        raise ValueError("block-list entry has nothing to match")
    # An edge in a script without spaces gets an implicit wildcard instead of a word boundary.
    if tokens[0][0] != "*" and _no_space_script(tokens[0][0]):
        tokens[0] = "*" + tokens[0]
    if tokens[-1][-1] != "*" and _no_space_script(tokens[-1][-1]):
        tokens[-1] = tokens[-1] + "*"
    parts: list[str] = []
    for tok in tokens:
        segs = tok.split("*")
        piece = re.escape(segs[0])
        for mid in segs[1:-1]:
            piece += rf"(?>\w*?{re.escape(mid)})"
        if len(segs) == 1:
            piece += r"(?!\w)"
        elif segs[-1]:
            # The only place the last segment can end is the end of the word: no ambiguity left.
            piece += rf"\w*?{re.escape(segs[-1])}(?!\w)"
        else:
            piece += r"(?>\w*)"
        parts.append(piece)
    return re.compile(r"(?<!\w)" + r"\W+".join(parts))


@lru_cache(maxsize=8192)
def _compile(entry: str) -> tuple[re.Pattern[str], bool]:
    quoted, body = _unquote(entry)
    if quoted:
        return _compile_words(body), True
    return _compile_substring(body), False


def compile_pattern(entry: str) -> re.Pattern[str]:
    """The regex for one block-list entry; raises :class:`ValueError` if it has nothing to match.

    Search it in :func:`normalise_text` of the prompt for a plain entry, in :func:`normalise_light` of
    the prompt for a quoted entry (:func:`is_whole_word`); :func:`find_blocked` does both.
    """
    return _compile(entry)[0]


def is_whole_word(entry: str) -> bool:
    """True for a quoted entry (matched as whole words on lightly normalised text)."""
    return _unquote(entry)[0]


def find_blocked(prompt: str, entries: Sequence[str]) -> str | None:
    """The first entry that matches the prompt, or None. Invalid entries are skipped."""
    full: str | None = None
    light: str | None = None
    for entry in entries:
        try:
            pattern, whole = _compile(entry)
        except ValueError:
            continue
        if whole:
            if light is None:
                light = normalise_light(prompt)
            text = light
        else:
            if full is None:
                full = normalise_text(prompt)
            text = full
        if pattern.search(text):
            return entry
    return None

"""Person names: the one place where a name given by a user becomes the name the library keeps.

Every way a name enters (the MQTT ``enroll``, ``enroll_track``, ``rename`` and ``inbox_name``
commands, the engine's web page, the CLI) ends in :class:`~facetrack.library.FaceLibrary`, which
calls :func:`clean_name` for a new or renamed person and :func:`name_key` to look one up.

The rules (``docs/mqtt.md``, "Person names"):

- Unicode NFC normalisation: ``"Jose\\u0301"`` and ``"José"`` are one name.
- Whitespace (Unicode ``White_Space``: spaces of category Zs such as U+00A0 NO-BREAK SPACE, tab,
  line breaks, U+2028/U+2029) is stripped at both ends and each inner run becomes one space:
  ``"John Salley\\u00a0"`` is ``"John Salley"``. Callers report such a change to the user
  (``normalised_from``) so that it is an explicit merge, never a silent one.
- Refused, with an error naming the character and its code point: control characters (Cc, DEL
  included), format characters (Cf: zero-width spaces and joiners, bidi overrides such as U+202E,
  soft hyphen, BOM), lone surrogates (Cs, not valid Unicode), private-use (Co) and unassigned
  (Cn, noncharacters included) code points. Names are shown in Home Assistant and compared by
  eye: an invisible or reordering character would make two different names look the same.
- 1 to :data:`MAX_NAME_LENGTH` characters after normalisation; at most :data:`MAX_RAW_LENGTH`
  characters as given (so the work done on a hostile name is bounded).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from facetrack.errors import LibraryError

#: Longest name kept, in characters (code points) after normalisation.
MAX_NAME_LENGTH = 100
#: Longest name accepted as given, before whitespace is collapsed.
MAX_RAW_LENGTH = 1000

# Unicode White_Space (PropList.txt). Not str.isspace(): that also counts U+001C-U+001F, which are
# control characters (refused), not spaces.
_WHITESPACE = re.compile(r"[\t\n\x0b\x0c\r\x85\u2028\u2029\x20\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_REFUSED = {
    "Cc": "a control character",
    "Cf": "an invisible format character (zero-width or text-direction control)",
    "Cs": "a lone surrogate (not valid Unicode)",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


class InvalidNameError(LibraryError):
    """A person's name was refused; the message says why (and names the character)."""


class CleanName(NamedTuple):
    """A normalised name and what it was given as.

    Attributes:
        name: the name the library keeps.
        given: the name as the user gave it.
    """

    name: str
    given: str

    @property
    def normalised_from(self) -> str | None:
        """The name as given when normalisation changed it, else ``None``."""
        return self.given if self.given != self.name else None


def _describe(ch: str) -> str:
    label = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" {label}" if label else "")


def _collapse(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidNameError(f"a person's name must be a string, got {type(name).__name__}")
    if len(name) > MAX_RAW_LENGTH:
        raise InvalidNameError(f"a person's name is limited to {MAX_NAME_LENGTH} characters")
    # NFC leaves lone surrogates as they are; they are refused afterwards (clean_name).
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", name)).strip(" ")


def clean_name(name: object) -> CleanName:
    """Normalise and check a person's name (the rules are in the module docstring).

    Args:
        name: the name as given (any object: a non-string is refused).

    Returns:
        The name to keep and the name as given (:attr:`CleanName.normalised_from`).

    Raises:
        InvalidNameError: not a string, empty, too long, or a refused character (the message
            names it, e.g. ``U+202E RIGHT-TO-LEFT OVERRIDE``, and its category).
    """
    clean = _collapse(name)
    for ch in clean:
        what = _REFUSED.get(unicodedata.category(ch))
        if what is not None:
            raise InvalidNameError(f"a person's name must not contain {_describe(ch)}: {what}")
    if not clean:
        raise InvalidNameError("a person's name must not be empty (or only spaces)")
    if len(clean) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"a person's name is limited to {MAX_NAME_LENGTH} characters")
    if all(unicodedata.category(ch).startswith("M") or ch == " " for ch in clean):
        raise InvalidNameError("a person's name must contain a letter, digit or symbol, not only combining marks")
    return CleanName(clean, str(name))


def name_key(name: object) -> str:
    """The form two names are compared in (NFC, whitespace collapsed), without refusing anything.

    For look-ups (``forget``, the old name of ``rename``...): a name stored before these rules
    existed, with a character :func:`clean_name` now refuses, can still be found and removed.

    Raises:
        InvalidNameError: not a string, empty, or over :data:`MAX_RAW_LENGTH` characters.
    """
    key = _collapse(name)
    if not key:
        raise InvalidNameError("a person's name must not be empty (or only spaces)")
    return key

"""What a command verb is, shared by the verbs of :mod:`facetrack.commands` and of the inbox
(:mod:`facetrack.inbox.commands`): its schema and handler (:class:`Verb`), the error it answers
with (:class:`CommandError`) and the field rules several verbs use.

Nothing here knows the MQTT transport or the web page: both reach the verbs through
:class:`facetrack.commands.CommandHandler`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from facetrack.errors import FaceTrackError
from facetrack.library.names import CleanName, InvalidNameError, clean_name, name_key

#: A verb's validated body (``request_id`` included) -> its result (the response's ``result``).
VerbHandler = Callable[[dict[str, Any]], dict[str, Any]]


class CommandError(Exception):
    """A command failed; ``code`` is machine-readable (``bad_request``, ``not_found``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self)

    @classmethod
    def of(cls, err: Exception) -> CommandError:
        """The answer to an exception raised by a verb: a :class:`CommandError` as it is, a
        :class:`~facetrack.errors.FaceTrackError` with its ``code``, anything else ``internal``
        (named by its type only: its text may hold paths)."""
        if isinstance(err, CommandError):
            return err
        if isinstance(err, FaceTrackError):
            return cls(err.code, str(err))
        return cls("internal", type(err).__name__)


@dataclass(frozen=True, slots=True)
class Verb:
    """One command verb.

    Attributes:
        schema: validates the body (``request_id`` included) and fills defaults.
        run: executes it on the command thread; raises :class:`CommandError` or a
            :class:`~facetrack.errors.FaceTrackError` (its ``code`` is answered).
        read_only: changes nothing (no retained topic is republished after it).
        changed: called after it succeeded, before the answer (so a client reacting to the
            answer finds the new retained state); None: nothing to do.
    """

    schema: vol.Schema
    run: VerbHandler
    read_only: bool = False
    changed: Callable[[], None] | None = None


def strict_int(v: Any) -> int:
    """A voluptuous validator: an ``int`` that is not a ``bool``."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise vol.Invalid("expected an integer")
    return v


def _name_validator(check: Callable[[Any], object]) -> Callable[[Any], str]:
    """A voluptuous validator from a :mod:`facetrack.library.names` check. The value is kept as
    given, so the answer can say what it was normalised from."""

    def validate(v: Any) -> str:
        try:
            check(v)
        except InvalidNameError as err:
            raise vol.Invalid(str(err)) from None
        return str(v)

    return validate


#: A name that creates or renames a person: the full rules.
NEW_NAME = _name_validator(clean_name)
#: A name that finds a person: lenient, so a name stored before the rules can be forgotten.
FIND_NAME = _name_validator(name_key)
#: A person, embedding or inbox group id.
HEX_ID = vol.All(str, vol.Match(r"^[0-9a-f]{32}$", msg="must be 32 lowercase hex characters"))


def normalised(clean: CleanName) -> dict[str, str]:
    """``{"normalised_from": <the name as given>}`` when the name kept differs, else ``{}``."""
    return {"normalised_from": clean.given} if clean.normalised_from is not None else {}

"""One exception hierarchy for every problem a user can fix.

The command line turns an :class:`AjusteError` into one line on stderr and exit code 2; anything else
is an internal error (exit code 1). Messages follow one shape: what went wrong, what was expected,
what was found, and how to fix it.

A bad value given by the caller (settings, data, a model name, a model used before it was fitted) is also a
``ValueError``, as Python and scikit-learn raise for one: ``except ValueError`` catches it. A run folder or a
study that cannot be read, or training that cannot go on, is an :class:`AjusteError` alone.
"""

from __future__ import annotations

import logging
import re
from typing import TypeVar

__all__ = [
    "AjusteError",
    "CommandLineWording",
    "ConfigError",
    "DataError",
    "DatasetUnavailableError",
    "ModelError",
    "NotFittedError",
    "RunFolderError",
    "SearchError",
    "TrainingError",
    "checked_switch",
    "first_line",
    "listing",
    "spoken",
    "yaml_problem",
]


E = TypeVar("E", bound="AjusteError")

#: ``[[--flag VALUE||name=value]]`` in a message: what to change, as the command line names it and as Python does.
_BOTH = re.compile(r"\[\[(.*?)\|\|(.*?)\]\](?!\])")  # a Python list may end the argument: ...]]]


def spoken(text: str, *, command_line: bool = False) -> str:
    """``text`` with each ``[[--flag||argument]]`` in the words of its reader: the flag on the command line, the
    argument in Python."""
    return _BOTH.sub(lambda found: found.group(1 if command_line else 2), text)


def first_line(exc: BaseException) -> str:
    """What a library's exception says, for an error's ``found``: its first line (200 characters at most), or its
    type's name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class CommandLineWording(logging.Filter):
    """A log handler's filter for the command line: an :class:`AjusteError` among a record's arguments is
    rendered with the flags (:meth:`AjusteError.for_command_line`), as the one error line is; the library logs
    the error itself, so that a Python caller's own handlers read Python's names (``str(error)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, AjusteError) for arg in record.args):
            record.args = tuple(arg.for_command_line() if isinstance(arg, AjusteError) else arg for arg in record.args)
        return True


def listing(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names`` and how many more, for an error's ``found``."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def yaml_problem(exc: BaseException) -> str:
    """What a YAML parser's error says, after "not valid YAML: ": its problem and where (``found character '\\t'
    that cannot start any token at line 2, column 1``), with the usual cause of that one (a tab)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return first_line(exc)
    text = f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return text + " (YAML indents with spaces, not tabs)" if "'\\t'" in problem else text


class AjusteError(Exception):
    """Base class of the errors that ajuste raises for bad input or bad settings."""

    def __init__(
        self,
        problem: str,
        *,
        expected: str | None = None,
        found: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(self._compose())

    def for_command_line(self) -> str:
        """The message with the command line's flags where Python's arguments stand in ``str()``."""
        return self._compose(command_line=True)

    def marked(self) -> str:
        """The message with both wordings kept (``[[--flag||argument]]``), for a record that either may show:
        :func:`spoken` renders it for its reader."""
        return self._compose(command_line=None)

    def _compose(self, command_line: bool | None = False) -> str:
        message = self.problem
        details = []
        if self.expected is not None:
            details.append(f"expected {self.expected}")
        if self.found is not None:
            details.append(f"found {self.found}")
        if details:
            message += ": " + ", ".join(details)
        if self.fix:  # one full stop between the details and the fix, also after a quoted message's own
            message = message.rstrip(".") + f". {self.fix}"
        # One line, always: the CLI prints this as is.
        return " ".join((message if command_line is None else spoken(message, command_line=command_line)).split())

    @classmethod
    def unreadable(cls: type[E], what: str, exc: OSError, otherwise: str) -> E:
        """The error for a file the system refuses to read (permissions, a vanished disk)."""
        denied = isinstance(exc, PermissionError)
        return cls(
            f"cannot read {what}",
            expected="a file this user may read",
            found="permission denied" if denied else (exc.strerror or type(exc).__name__),
            fix="Give this user read permission (chmod u+r), or copy the file somewhere readable."
            if denied
            else otherwise,
        )


class ConfigError(AjusteError, ValueError):
    """Settings that are missing, of the wrong type, or inconsistent with each other."""


class DataError(AjusteError, ValueError):
    """A data file that cannot be read, or whose content cannot make a classification task."""


class DatasetUnavailableError(DataError):
    """A built-in dataset that is neither in a data directory, nor cached, nor downloadable."""


class ModelError(AjusteError, ValueError):
    """An unknown model name, or a checkpoint that is missing, incomplete or incompatible."""


class RunFolderError(AjusteError):
    """A run folder that is missing, incomplete, or written by an incompatible version."""


class NotFittedError(AjusteError, ValueError):
    """A classifier used before ``fit`` (or ``ajuste.load``) gave it weights."""


class TrainingError(AjusteError):
    """Training that cannot go on, such as a loss that became NaN or infinite."""


class SearchError(AjusteError):
    """A search that cannot go on: its shared study belongs to other settings, or its database is gone."""


def checked_switch(value: object, name: str) -> bool:
    """``value`` when it is True or False; a ConfigError otherwise: a switch such as ``overwrite="no"`` is truthy,
    and read as given it would replace what the caller meant to keep."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"{name} must be True or False", found=repr(value)[:80], fix=f"Pass {name}=True or {name}=False."
        )
    return value

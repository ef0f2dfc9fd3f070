"""The errors a checkpoint reader raises, and the safety net that turns any other failure into one of them.

Every refusal is a :class:`CheckpointError` (a ``ValueError``).  Refusals inside a pickle are also
``pickle.UnpicklingError`` (:class:`UnsafePickleError`, with :class:`ForbiddenGlobalError` for a global off the
loader's table), so callers that catch either keep working.
"""
from __future__ import annotations

import contextlib
import pickle


class CheckpointError(ValueError):
    """The file cannot be turned into what was asked for (refused, damaged, unknown class, wrong architecture);
    nothing from it was imported or run."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """The pickle asks for something the loader never does (an opcode or a call it refuses)."""


class ForbiddenGlobalError(UnsafePickleError):
    """The pickle names a global that is not in the loader's table; nothing was looked up or called."""


class UnexpectedCheckpointError(CheckpointError):
    """The file made the reader fail in a way none of its checks names (the safety net of :func:`refusing`).
    Still a refusal; the fuzz harness counts these separately, as checks the reader is missing."""


def describe(value, limit: int = 80) -> str:
    """A short, always printable description of a value read from a file (its type, and its repr if short)."""
    if isinstance(value, (bool, int, float, str, bytes, type(None))):
        try:
            text = repr(value)
        except ValueError:  # an int too long for str()
            text = f"<int of {value.bit_length()} bits>"
        return text if len(text) <= limit else text[:limit] + "..."
    return type(value).__name__


def same(value, expected) -> bool:
    """``value == expected`` for a value read from a file, without calling any ``__eq__`` but that of
    ``expected``'s own type (so a tensor or a record compares unequal instead of raising)."""
    if type(expected) is tuple:
        return (type(value) is tuple and len(value) == len(expected)
                and all(same(v, e) for v, e in zip(value, expected)))
    return type(value) is type(expected) and value == expected


@contextlib.contextmanager
def refusing(source):
    """Re-raise any failure of the block other than a :class:`CheckpointError` as an
    :class:`UnexpectedCheckpointError` naming ``source``.  ``MemoryError`` (the machine, not the file, may be
    to blame) and ``BaseException``\\ s that are not ``Exception``\\ s pass through."""
    try:
        yield
    except (CheckpointError, MemoryError):
        raise
    except Exception as err:
        try:
            detail = str(err)[:300]
        except Exception:  # noqa: BLE001 - the message of a failure caused by a hostile value may itself fail
            detail = "<no message>"
        raise UnexpectedCheckpointError(f"{source}: malformed file ({type(err).__name__}: {detail})") from err

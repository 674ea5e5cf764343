"""The package's one error type: a message a user can act on, naming the file and the fix."""

from __future__ import annotations

from os import PathLike


class EdgeMedSAMError(Exception):
    """An error the user can fix: bad file, bad prompt, unknown modality, missing backend.

    ``str(err)`` is one line: ``<path>: <problem> (fix: <what to do>)``.
    """

    def __init__(self, problem: str, *, path: str | PathLike[str] | None = None, fix: str | None = None):
        self.problem = " ".join(str(problem).split())
        self.path = None if path is None else str(path)
        self.fix = None if fix is None else " ".join(str(fix).split())
        super().__init__(self._line())

    def _line(self) -> str:
        line = self.problem if self.path is None else f"{self.path}: {self.problem}"
        return line if not self.fix else f"{line} (fix: {self.fix})"

    def with_path(self, path: str | PathLike[str]) -> EdgeMedSAMError:
        """Return the same error attributed to ``path`` (for errors raised below the file level)."""
        return type(self)(self.problem, path=path, fix=self.fix)


class InputError(EdgeMedSAMError, ValueError):
    """A file, array, prompt or name given by the user cannot be used as it is."""

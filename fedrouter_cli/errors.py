"""The few errors users see. Each carries one sentence naming the problem and the fix."""

from __future__ import annotations


class FedrouterError(Exception):
    """A problem with the user's input or run directory; the CLI prints it and exits with 2."""

    exit_code = 2


class MissingInputError(FedrouterError):
    """A stage was asked for before the stage it reads from has produced its output."""


class CorruptArtifactError(FedrouterError):
    """An artifact in the run directory cannot be read."""


class FederationStopped(RuntimeError):
    """The federation could not go on (no node answered, or none trained a round). Not bad input
    and not a bug: the finished rounds are kept and the same command resumes after them."""


class BenchStopped(Exception):
    """The user asked the bench to stop (its STOP file) and it did, before `cell`: not an error;
    every finished cell is saved and the same command continues with `cell`."""

    def __init__(self, cell: str) -> None:
        super().__init__(cell)
        self.cell = cell

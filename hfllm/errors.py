"""The errors hfllm reports to users, each with its documented exit code (README: Output contract)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class HfllmError(Exception):
    """A failure with a message meant for the user (no traceback) and an exit code."""

    exit_code = EXIT_UNEXPECTED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  {self.hint}"


class ConfigError(HfllmError):
    """Bad usage or configuration: exit 2."""

    exit_code = EXIT_USAGE


class InputError(HfllmError):
    """Bad or missing input data, model or tokenizer: exit 3."""

    exit_code = EXIT_INPUT


class Interrupted(BaseException):
    """The run was stopped by a signal after its last checkpoint was made safe (exit 130 or 143).

    Like KeyboardInterrupt it is control flow, not a failure: it derives from BaseException so that no
    `except Exception` (around a library call that may fail) can swallow it and turn Ctrl-C into exit 3.
    """

    def __init__(self, message: str, exit_code: int = EXIT_SIGINT, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  {self.hint}"


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (its type name when it has none), for a
    one-line error that names what a library refused."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

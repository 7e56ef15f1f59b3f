"""Errors the compiler raises for bad user input or failed checks (one line in the CLI, exit 2)."""


class CompilerError(RuntimeError):
    """A target, model or artifact problem the user can act on; the message says which."""

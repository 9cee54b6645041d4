"""User-facing errors: the CLI prints these as one line (with a hint), without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, unknown model name, malformed file).

    Args:
        message: what went wrong, naming the file/key/value involved.
        hint: optional next step, printed after the message.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base

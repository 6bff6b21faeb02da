"""The one exception every `strom` command may raise for the user (kept free of client libraries, so that
`strom serve` does not load librdkafka just to catch it)."""


class CliError(Exception):
    """A failure the user can act on; ``main`` prints it as one ``error:`` line instead of a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

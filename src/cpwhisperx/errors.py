"""Errors the user sees as one line; anything else is a bug."""


class CpwError(Exception):
    """A problem with the user's input or environment, shown as one line with a remedy.

    ``exit_code`` follows the CLI convention: 2 for usage and configuration, 1 for failures
    while running.
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CpwError):
    exit_code = 2


class MediaError(CpwError):
    """The media file cannot be used (missing, empty, corrupt, no audio)."""


class EngineUnavailable(CpwError):
    """An engine cannot start in this configuration (CUDA out of memory, no driver, an
    unsupported compute type): the next configuration of the fallback chain may work."""


class ModelNotFound(CpwError):
    """No model of that name could be found locally or downloaded."""


def reason(exc: BaseException) -> str:
    """The first line of a library's exception, or its type where it has no message: what a
    one-line error quotes."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]

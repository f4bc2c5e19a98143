"""The one exception type of the training side: a user mistake with a message that says what to do."""


class KwsError(Exception):
    """Bad input or settings. The CLI prints the message on one line and exits with code 2."""

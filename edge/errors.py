"""The one exception type of the device runtime."""


class EdgeError(Exception):
    """A problem the user can fix (missing model, unreadable file, no microphone). `edge.listen` prints
    the message on one line and exits with code 2."""

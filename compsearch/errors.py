"""The one exception type the library raises for problems a user can fix.

The CLI turns it into a one-line message and a non-zero exit; library users can catch it.
"""


class CompsearchError(Exception):
    """A problem with the user's input, files or index, with a message that says what to do."""

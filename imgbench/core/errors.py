"""The one base class of the user's mistakes: a bad option, a missing dataset, an unreadable run
file.

The command line turns exactly these into one line and exit 2; anything else is a bug and keeps its
traceback. A ValueError too, so that library callers may catch them as the bad values they are.
"""


class UserError(ValueError):
    """Bad input; the message names the bad value and what would be valid."""

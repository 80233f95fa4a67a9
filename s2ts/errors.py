"""User-facing errors: one clear message naming the problem and the fix."""


class UserError(Exception):
    """An error caused by the user's input or configuration.

    The message must say what is wrong and how to fix it. Scripts and the
    Snakefile print it as-is, without a Python traceback.
    """

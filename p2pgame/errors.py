"""The two exception types users see: bad input (exit code 2) and solver trouble (exit code 1).

Raise them where the bad value is first seen, with a message that names the file,
element or agent, the field, and what was expected.
"""


class InputError(ValueError):
    """Bad input: a malformed feeder, scenario, agent parameter or envelope."""


class SolverError(RuntimeError):
    """A solver failed, or an iterative method did not converge."""


class ConvergenceError(SolverError):
    """An iterative method used up its budget; the message shows the last residuals."""

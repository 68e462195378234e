"""``python -m tests.support.launcher ARGS``: the real gatehouse CLI with test backends.

Registers the test-only backend types (``tests.support.hang_backend``,
``tests.support.explode_backend``) before handing
over to ``gateway.cli.main``; nothing else differs from the installed command.
"""

from __future__ import annotations

import sys

import tests.support.explode_backend
import tests.support.hang_backend  # noqa: F401 - registers backend type "test-hang-once"
from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())

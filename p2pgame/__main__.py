"""`python -m p2pgame` is the `p2pgame` command."""

import sys

from p2pgame.cli import main

sys.exit(main())

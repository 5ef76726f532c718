"""`python -m rdv.commands`: the `rdv` command, where its script is not on the PATH."""

import sys

from rdv.commands import main

sys.exit(main())

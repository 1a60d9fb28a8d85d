"""``python -m pyrosequence`` runs the command line."""

import sys

from pyrosequence.cli import main

sys.exit(main())

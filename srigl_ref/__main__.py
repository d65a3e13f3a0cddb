"""``python -m srigl_ref`` runs the command line (``srigl_ref.cli``)."""
import sys

from .cli import main

sys.exit(main())

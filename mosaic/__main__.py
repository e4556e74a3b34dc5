"""``python -m mosaic`` (and ``torchrun -m mosaic train ...``) run the command line."""

import sys

from mosaic.app.cli import main

sys.exit(main())

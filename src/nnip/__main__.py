"""``python -m nnip`` (used by ``torchrun -m nnip``)."""

import sys

from nnip.cli.main import main

sys.exit(main())

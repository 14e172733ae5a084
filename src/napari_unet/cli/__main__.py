"""``python -m napari_unet.cli``: the command line."""

import sys

from ._main import main

sys.exit(main())

"""Headless command line: ``napari-unet train | predict | export | evaluate``.

Exit codes: 0 ok; 2 usage (argparse); 3 missing input file, an output that exists without
``--overwrite``, or an output that cannot be written (checked before any work); 4 unreadable
image (also one larger than the memory) or corrupt/foreign model checkpoint; 5 bad data (shape
mismatch, bad labels, image incompatible with the model, a diverged training, out of memory,
...); 130 cancelled (Ctrl-C; ``train`` then saves the model of the last finished step).
Errors print one line ``napari-unet: error: ...`` on stderr, never a traceback, and outputs are
written atomically, so a failed or cancelled run leaves no half-written file.
"""

from ._common import (
    EXIT_CANCELLED,
    EXIT_DATA,
    EXIT_FILE,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    PROG,
    CliError,
)
from ._main import main
from .evaluate import evaluate_pair
from .parser import build_parser, probability_threshold

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_DATA",
    "EXIT_FILE",
    "EXIT_OK",
    "EXIT_UNREADABLE",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "build_parser",
    "evaluate_pair",
    "main",
    "probability_threshold",
]

"""``main``: parse, run one command, map its errors to exit codes and one-line messages."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._common import (
    EXIT_CANCELLED,
    EXIT_DATA,
    EXIT_FILE,
    EXIT_UNREADABLE,
    PROG,
    CliError,
)
from .parser import build_parser


def _fail(code: int, message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (tests call it in-process)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from ..core.checkpoint import CheckpointError
    from ..core.tiling import PredictionCancelled

    try:
        return int(args.func(args))
    except CliError as error:
        return _fail(error.code, str(error))
    except (KeyboardInterrupt, PredictionCancelled):
        return _fail(EXIT_CANCELLED, "cancelled")
    except CheckpointError as error:
        return _fail(EXIT_UNREADABLE, str(error))
    except FileNotFoundError as error:
        return _fail(EXIT_FILE, str(error))
    except FileExistsError as error:
        return _fail(EXIT_FILE, f"{error}; pass --overwrite to replace it")
    except ValueError as error:
        return _fail(EXIT_DATA, str(error))
    except OSError as error:
        return _fail(EXIT_FILE, f"{error}")
    except MemoryError as error:
        return _fail(EXIT_DATA, _out_of_memory(error))
    except RuntimeError as error:  # torch's allocators: CPU and CUDA (OutOfMemoryError)
        if not any(words in str(error) for words in _OOM_WORDS):
            raise
        return _fail(EXIT_DATA, _out_of_memory(error))


_OOM_WORDS = ("out of memory", "not enough memory", "can't allocate memory")


def _out_of_memory(error: BaseException) -> str:
    """One line for an allocation that failed, with what to change."""
    detail = (str(error).strip().splitlines() or [""])[0]
    return (
        f"out of memory{f' ({detail})' if detail else ''}: use smaller images, --patch-size "
        "or --batch-size (train), --tile-size, --batch-size or --memory-budget (predict)"
    )

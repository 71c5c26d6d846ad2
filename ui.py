"""`python ui.py`: starts Amend, the local chat assistant whose facts you can correct.

A thin entry point: the command line is `amend_ui.app` (see `python ui.py --help`), the page
is the rest of `amend_ui/`. It notes the time before any heavy import, so the start-up times
in the log count from the top of this file.
"""
from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()  # before the heavy imports, so start-up times are honest

import sys

from amend_ui.app import main, parse_args

__all__ = ["main", "parse_args"]  # parse_args: for tests and other callers

if __name__ == "__main__":
    sys.exit(main(started_at=PROCESS_STARTED))

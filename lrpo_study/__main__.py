import os
import sys

from . import interrupts

interrupts.install()
try:  # importing torch takes seconds: a Ctrl-C then is one line too
    from .cli import main
except KeyboardInterrupt:
    print("\nlrpo_study: interrupted", file=sys.stderr, flush=True)
    # Nothing is open yet; a half-finished import must not get a second say during shutdown.
    os._exit(130)

sys.exit(main())

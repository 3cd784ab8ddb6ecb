import sys

from . import interrupts

interrupts.install()
try:  # importing torch takes seconds: a Ctrl-C then is one line too
    from .cli import main
except KeyboardInterrupt:
    print("\nlrpo_study: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())

from . import interrupts

interrupts.install()  # from here on a Ctrl-C is one line and exit status 130, whatever is importing

from .cli import entry  # noqa: E402  (after the handler: the commands import torch, which takes seconds)

entry()

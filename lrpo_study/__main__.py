from . import interrupts

if __name__ == "__main__":  # not when a spawned worker process imports this module as its __mp_main__
    interrupts.install()  # from here on a Ctrl-C is one line and exit status 130, whatever is importing

    from lrpo_study.cli import (
        entry,  # (after the handler: the commands import torch, which takes seconds)
    )

    entry()

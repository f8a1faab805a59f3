"""``python -m agents.train ...``: the ``textgym train`` command (:mod:`agents.cli`), runnable as
a module so that launchers can start it on every rank:

    python -m agents.train --env TextGen-v0 --agent ppo --episodes 2000 --out runs/ppo --eval-episodes 64
    torchrun --nproc_per_node 4 -m agents.train --env TextGen-v0 --agent ppo --out runs/ppo-ddp
"""

import sys

from agents.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("train", sys.argv[1:], prog="python -m agents.train"))

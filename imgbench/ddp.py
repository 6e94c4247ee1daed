"""`python -m imgbench.ddp`: one data-parallel worker, as torchrun starts it
(imgbench.workloads.ddp.worker). Kept at this path: it is the command torchrun runs, in the launcher
and in multi-node set-ups by hand."""

import sys

from imgbench.workloads.ddp.worker import main

if __name__ == "__main__":
    sys.exit(main())

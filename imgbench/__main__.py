import sys

from imgbench.cli import main

sys.exit(main())

"""`torchrun --nproc_per_node N -m longvmnet.train ARGS` (the arguments of `longvmnet train`).

An entry point, like the CLI it calls: it is the only module in train/ allowed to import longvmnet.cli.
"""

import sys

from longvmnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

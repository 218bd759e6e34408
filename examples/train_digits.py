"""Train a small CNN on scikit-learn's 8x8 digits with fastconv as the backend (``--backend reference`` for numpy).

A thin wrapper: the code lives in ``fastconv.nn.train_digits`` so the installed command
``python -m fastconv train`` runs the same thing. ``python examples/train_digits.py --help`` for options.
"""

import sys

from fastconv.nn.train_digits import main

if __name__ == "__main__":
    sys.exit(main(prog="train_digits.py"))

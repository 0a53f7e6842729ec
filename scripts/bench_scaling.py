"""Weak scaling of decomposed MD over P = 1, 2, 4, 8 domains (same as `legato bench scaling`)."""

import argparse
import sys

from legato_jax.bench.parallel_scaling import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

"""Training steps per second, Adam vs SAM on the same batches (same as `legato bench train`)."""

import argparse
import sys

from legato_jax.bench.train import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

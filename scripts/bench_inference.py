"""Energy + forces time per call on liquid-ammonia boxes (same as `legato bench inference`)."""

import argparse
import sys

from legato_jax.bench.inference import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

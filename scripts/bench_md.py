"""MD step time against the bare force call on ammonia boxes (same as `legato bench md`)."""

import argparse
import sys

from legato_jax.bench.md import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))

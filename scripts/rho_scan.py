"""Train one model per SAM radius rho with otherwise identical settings, then measure accuracy,
sharpness and time to failure of each; writes OUT/rho_scan.{json,csv,png} and prints the table.

The paper's scan: --rhos 0.001 0.0025 0.005 0.01 0.025 0.05. Full runs are for a GPU or a long
CPU job; a run whose best.npz exists is reused, so an interrupted scan continues.

    python scripts/rho_scan.py --config configs/train/allegro.yaml --rhos 0 0.005 0.05 \\
        --out runs/rho_scan --set max_minutes=60 --sizes 512 1728 --replicas 8 --preset stressed
"""

import argparse
import sys

from legato_jax.cli.ttf import add_protocol_arguments, build_config
from legato_jax.errors import LegatoError
from legato_jax.experiments.rho_scan import RhoScanConfig, format_rho_table, run_rho_scan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/train/allegro.yaml", help="training YAML shared by every rho")
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05])
    parser.add_argument("--out", default="runs/rho_scan", help="directory of the runs and the results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="training override for every rho (as legato train --set), repeatable")
    parser.add_argument("--sharpness-frames", type=int, default=100)
    parser.add_argument("--sharpness-draws", type=int, default=50)
    add_protocol_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if any(r < 0 for r in args.rhos) or len(set(args.rhos)) != len(args.rhos):
            raise LegatoError(f"--rhos {args.rhos}: give distinct values >= 0")
        cfg = RhoScanConfig(tuple(args.rhos), args.config, args.out, build_config(args), tuple(args.set),
                            args.sharpness_frames, args.sharpness_draws)
        result = run_rho_scan(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    except LegatoError as exc:
        print(f"rho_scan: error: {exc}", file=sys.stderr)
        return 2
    print(format_rho_table(result))
    print(f"wrote {args.out}/rho_scan.json, rho_scan.csv, rho_scan.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

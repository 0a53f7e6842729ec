"""`legato rho-scan`: one model per SAM radius rho, trained alike, then the accuracy, sharpness and
time to failure of each (the paper's rho scan)."""

from __future__ import annotations

import sys

from legato_jax.cli.ttf import add_protocol_arguments, build_config
from legato_jax.errors import ConfigError

PAPER_RHOS = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)


def register(sub) -> None:
    p = sub.add_parser("rho-scan", help="train one model per SAM radius rho, then accuracy, sharpness and time to failure",
                       description="Train one model per rho with otherwise identical settings, then measure each "
                                   "one's test error, sharpness and time to failure; writes OUT/rho_scan.{json,csv,png}. "
                                   "A rho whose run has ended is reused, so an interrupted scan continues.")
    p.add_argument("--config", default="configs/train/allegro.yaml", help="training YAML shared by every rho")
    p.add_argument("--rhos", type=float, nargs="+", default=list(PAPER_RHOS), metavar="RHO",
                   help="SAM radii (0: plain Adam)")
    p.add_argument("--out", default="runs/rho_scan", help="folder of the runs and the results")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training override for every rho (as legato train --set), repeatable")
    p.add_argument("--sharpness-frames", type=int, default=100, help="training frames of the sharpness measures")
    p.add_argument("--sharpness-draws", type=int, default=50, help="weight-noise draws of the noise sharpness")
    p.add_argument("--train-only", action="store_true",
                   help="only train (or continue) the runs of --rhos, e.g. one process per core; a later call "
                        "without it reuses them; needs no --sizes")
    add_protocol_arguments(p, sizes_required=False)
    p.set_defaults(func=main)


def main(args) -> int:
    from legato_jax.experiments.rho_scan import RhoScanConfig, format_rho_table, run_rho_scan

    if any(r < 0 for r in args.rhos) or len(set(args.rhos)) != len(args.rhos):
        raise ConfigError(f"--rhos {' '.join(map(str, args.rhos))}: give distinct values >= 0")
    if not args.sizes and not args.train_only:
        raise ConfigError("--sizes: give the system sizes of the time-to-failure runs, e.g. --sizes 64 128 "
                          "(or --train-only to train without them)")
    ttf = build_config(args) if args.sizes else None
    cfg = RhoScanConfig(tuple(args.rhos), args.config, args.out, ttf, tuple(args.set),
                        args.sharpness_frames, args.sharpness_draws, train_only=args.train_only)
    result = run_rho_scan(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.train_only:
        print(f"trained {', '.join(result['trained'])} in {args.out}")
        return 0
    print(format_rho_table(result))
    print(f"wrote {args.out}/rho_scan.json, rho_scan.csv, rho_scan.png")
    return 0

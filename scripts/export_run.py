"""Copy a finished training run into models/NAME with its test-split errors and sharpness.

python scripts/export_run.py runs/legato models/legato [--sharpness-frames 100 --draws 50]
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def legato(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "legato_jax.cli.main", *args, "--json"], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run")
    p.add_argument("dest")
    p.add_argument("--data", default="data/ammonia.extxyz.xz")
    p.add_argument("--split", default="data/ammonia.split.json")
    p.add_argument("--sharpness-frames", type=int, default=100)
    p.add_argument("--draws", type=int, default=50)
    args = p.parse_args()
    run, dest = Path(args.run), Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("best.npz", "config.yaml", "metrics.csv", "stats.json"):
        shutil.copy2(run / name, dest / name)
    model = str(dest / "best.npz")
    test = legato("evaluate", "--model", model, "--data", args.data, "--split", args.split, "--subset", "test")
    (dest / "test_metrics.json").write_text(json.dumps(test, indent=1) + "\n")
    sharp = legato("sharpness", "--model", model, "--data", args.data, "--split", args.split, "--subset", "train",
                   "--max-frames", str(args.sharpness_frames), "--draws", str(args.draws))
    (dest / "sharpness.json").write_text(json.dumps(sharp, indent=1) + "\n")
    print(json.dumps({"test": test, "sharpness": sharp}, indent=1))


if __name__ == "__main__":
    main()

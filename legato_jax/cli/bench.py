"""`legato bench ...`: benchmarks that print a table."""

from __future__ import annotations

from legato_jax.bench import inference, md, parallel_scaling, train


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (print a table)")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    i = bsub.add_parser("inference", help="energy + forces per call on ammonia boxes, vs nequip-allegro if importable")
    inference.add_arguments(i)
    i.set_defaults(func=inference.main)
    t = bsub.add_parser("train", help="training steps/s, Adam vs SAM on the same batches")
    train.add_arguments(t)
    t.set_defaults(func=train.main)
    m = bsub.add_parser("md", help="MD step time against the bare force call; ASE VelocityVerlet as the peer")
    md.add_arguments(m)
    m.set_defaults(func=md.main)
    s = bsub.add_parser("scaling", help="weak scaling of decomposed MD over P domains (devices or MPI ranks)")
    parallel_scaling.add_arguments(s)
    s.set_defaults(func=parallel_scaling.main)

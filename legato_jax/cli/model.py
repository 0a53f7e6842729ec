"""`legato model info CONFIG|MODEL`: architecture summary and parameter count; `legato model
export MODEL OUT`: the model as a jax.export artifact."""

from __future__ import annotations


import jax
import numpy as np

from legato_jax.cli.options import add_json_option, check_json_target, emit, positive_int
from legato_jax.model.irreps import layer_irreps


def register(sub) -> None:
    p = sub.add_parser("model", help="inspect model configs and files")
    msub = p.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)
    i = msub.add_parser("info", help="parameter count per module and the irreps of each layer")
    i.add_argument("source", help="model YAML or shipped preset (allegro-cpu, allegro-l1, allegro-tiny), or a model file (.npz), run directory or shipped model (allegro, legato)")
    add_json_option(i, "the counts and irreps")
    i.set_defaults(func=_info)
    e = msub.add_parser("export", help="write the model as a jax.export (StableHLO) artifact: energy, forces, "
                                       "stress for fixed capacities, runnable with jax alone")
    e.add_argument("model", help="model file (.npz) or run directory")
    e.add_argument("out", help="artifact to write (JSON)")
    e.add_argument("--max-atoms", type=positive_int, required=True, help="atom capacity")
    e.add_argument("--max-edges", type=positive_int, help="edge capacity (default: 96 per atom)")
    e.add_argument("--platforms", nargs="+", choices=["cpu", "cuda", "rocm"], default=["cpu"],
                   help="platforms the artifact can run on")
    e.add_argument("--precision", choices=["float32", "float64"], help="default: the model's")
    add_json_option(e, "the contract")
    e.set_defaults(func=_export)


def _export(args) -> int:
    from legato_jax.md.run import with_precision
    from legato_jax.model.export import export_model
    from legato_jax.model.io import resolve_model
    from legato_jax.outputs import writable

    writable(args.out, "OUT")
    check_json_target(args)
    potential, params, _ = resolve_model(args.model)
    max_edges = args.max_edges or 96 * args.max_atoms
    with jax.enable_x64((args.precision or potential.config.dtype) == "float64"):
        potential, params = with_precision(potential, params, args.precision)
        contract = export_model(potential, params, args.out, args.max_atoms, max_edges, tuple(args.platforms))
    emit(args, contract, f"{args.out}: {contract['dtype']} model, cutoff {contract['cutoff']} Å, species "
         f"{contract['species']}, up to {contract['max_atoms']} atoms and {contract['max_edges']} edges, for "
         f"{contract['platforms']}")
    return 0


def _info(args) -> int:
    check_json_target(args)
    from ase import Atoms
    from legato_jax.data.graph import TypeMap, atoms_to_graph, collate
    from legato_jax.model.config import AllegroConfig, ModelStats
    from legato_jax.model.io import resolve_model
    from legato_jax.model.potential import Potential
    from legato_jax.shipped import locate

    source = locate(args.source, "model")
    if source.suffix == ".npz" or source.is_dir():
        potential, params, _ = resolve_model(source)
        config = potential.config
    else:
        config = AllegroConfig.from_yaml(args.source)
        potential = Potential(config, ModelStats.default(len(config.species)))
        probe = Atoms(config.species[0] * 2, positions=[[0, 0, 0], [1.0, 0, 0]])
        fg = atoms_to_graph(probe, TypeMap(config.species), config.r_max)
        params = potential.init(jax.random.PRNGKey(0), collate([fg], 8, 8, 2, config.r_max).graph)
    per_module = {k: int(sum(np.size(x) for x in jax.tree_util.tree_leaves(v))) for k, v in params["params"].items()}
    total = sum(per_module.values())
    layers = [{"layer": k, "tensor_in": str(a), "tensor_out": str(o)}
              for k, (a, o) in enumerate(layer_irreps(config.l_max, config.parity, config.num_layers))]
    lines = [f"{args.source}: {total:,} parameters"]
    lines += [f"  {name:<20} {n:>9,}" for name, n in per_module.items()]
    lines += [f"  layer {layer['layer']}: {layer['tensor_in']} x SH -> {layer['tensor_out']}" for layer in layers]
    emit(args, {"config": config.to_dict(), "parameters": total, "per_module": per_module, "layers": layers},
         "\n".join(lines))
    return 0

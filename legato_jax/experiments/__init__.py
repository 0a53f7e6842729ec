"""Experiments on trained models: time to failure of MD replicas (`ttf`, with the failure criteria
of `failure` and the batched replica runner of `replicas`), the fidelity-scaling fit
t_failure ~ N^-beta (`fidelity`), loss sharpness (`sharpness`) and the SAM-radius scan
(`rho_scan`).

The names below are imported on first use, so that importing one experiment does not load the
others (and the JAX-heavy ones stay out of `legato --help`)."""

from legato_jax.lazy import lazy_exports

_EXPORTS = {
    "CRITERIA": "failure", "FailureCriteria": "failure", "make_checks": "failure",
    "FidelityFit": "fidelity", "fit_beta": "fidelity",
    "ReplicaResult": "replicas", "run_replicas": "replicas",
    "RhoScanConfig": "rho_scan", "run_rho_scan": "rho_scan",
    "dataset_loss_fn": "sharpness", "noise_sharpness": "sharpness", "sam_sharpness": "sharpness",
    "TTFConfig": "ttf", "compare_models": "ttf", "format_table": "ttf", "run_ttf": "ttf",
    "plot_ttf": "plots",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

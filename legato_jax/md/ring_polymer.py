"""Ring-polymer (path-integral) dynamics for any force function, in jax-md's (init_fn, apply_fn) form.

P beads per atom, positions and momenta of shape (P, N, 3), sampled at the bead temperature P T
with the ring Hamiltonian sum_j [p_j^2 / 2m + m w_P^2 |q_j - q_j+1|^2 / 2 + V(q_j)], w_P = P kT / hbar.
The step is BAOAB (Leimkuhler-Matthews; for path integrals Liu, Li and Liu, J. Chem. Phys. 145,
024103 (2016)): half kicks from the beads' physical forces, the free ring polymer propagated
exactly in its normal modes for half steps around the thermostat. The thermostat is PILE
(Ceriotti, Parrinello, Markland, Manolopoulos, J. Chem. Phys. 133, 124104 (2010)): Langevin
friction 2 lambda w_k on each internal mode and, on the centroid, Langevin friction 1/tau (PILE-L),
Bussi's stochastic velocity rescaling (PILE-G), or none (TRPMD, Rossi, Ceriotti, Manolopoulos,
J. Chem. Phys. 140, 234116 (2014), with lambda = 1/2). At P = 1 the step is jax-md's
`nvt_langevin` (BAOAB), random numbers included.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ase import units as ase_units

from legato_jax.errors import ConfigError

HBAR = ase_units._hbar * ase_units.J * ase_units.s  # eV x (Å sqrt(amu / eV)), jax-md's metal time unit
THERMOSTATS = ("pile-l", "pile-g", "none")


class RingPolymerState(NamedTuple):
    """Beads' positions, momenta and physical forces (P, N, 3); masses (N, 1); the noise key."""

    position: jax.Array
    momentum: jax.Array
    force: jax.Array
    mass: jax.Array
    rng: jax.Array

    def set(self, **kw) -> "RingPolymerState":
        return self._replace(**kw)


def normal_mode_matrix(beads: int) -> np.ndarray:
    """The orthogonal (P, P) matrix C with bead coordinates q = C q~ (column k: mode k; column 0 the
    centroid x sqrt(P)); the modes' frequencies are `ring_frequencies`."""
    j = np.arange(beads)[:, None]
    k = np.arange(beads)[None, :]
    C = np.where(k <= beads // 2, np.sqrt(2.0 / beads) * np.cos(2 * np.pi * j * k / beads),
                 np.sqrt(2.0 / beads) * np.sin(2 * np.pi * j * k / beads))
    C[:, 0] = np.sqrt(1.0 / beads)
    if beads % 2 == 0:
        C[:, beads // 2] = np.sqrt(1.0 / beads) * (-1.0) ** np.arange(beads)
    return C


def ring_frequencies(beads: int, kT: float) -> np.ndarray:
    """w_k = 2 w_P sin(k pi / P), w_P = P kT / hbar, in jax-md's inverse time unit."""
    return 2.0 * beads * kT / HBAR * np.sin(np.arange(beads) * np.pi / beads)


def to_modes(x: jax.Array, C: jax.Array) -> jax.Array:
    """Bead coordinates (P, N, 3) -> normal-mode coordinates (mode 0: sqrt(P) x the centroid)."""
    return jnp.einsum("jk,jna->kna", C, x)


def from_modes(x: jax.Array, C: jax.Array) -> jax.Array:
    """Normal-mode coordinates (P, N, 3) -> bead coordinates."""
    return jnp.einsum("jk,kna->jna", C, x)


def free_ring_step(position, momentum, mass, omega, C, dt: float):
    """The free ring polymer (springs and kinetic energy, no potential) advanced exactly by `dt`:
    each normal mode a harmonic oscillator, the centroid moving freely."""
    q, p = to_modes(position, C), to_modes(momentum, C)
    w = omega[:, None, None]
    safe = jnp.where(w > 0, w, 1.0)
    cos, sin = jnp.cos(w * dt), jnp.sin(w * dt)
    mw = mass[None] * safe
    q_new = jnp.where(w > 0, cos * q + sin * p / mw, q + dt * p / mass[None])
    p_new = jnp.where(w > 0, cos * p - mw * sin * q, p)
    return from_modes(q_new, C), from_modes(p_new, C)


def bussi_factor(key: jax.Array, kinetic, target, dof: int, c1):
    """Stochastic velocity rescaling (Bussi, Donadio, Parrinello, J. Chem. Phys. 126, 014101
    (2007)): the factor on momenta that carries `kinetic` to a canonical draw around `target`
    (both eV) with memory c1 = exp(-dt / tau)."""
    k1, k2 = jax.random.split(key)
    r1 = jax.random.normal(k1, (), kinetic.dtype)
    rest = 2.0 * jax.random.gamma(k2, (dof - 1) / 2.0, (), kinetic.dtype)  # chi^2 with dof - 1
    moving = kinetic > 0  # nothing to rescale at rest (a single atom with its momentum removed)
    ratio = target / (dof * jnp.where(moving, kinetic, 1.0))
    alpha2 = c1 + (1 - c1) * (r1 * r1 + rest) * ratio + 2 * r1 * jnp.sqrt(c1 * (1 - c1) * ratio)
    sign = jnp.sign(r1 + jnp.sqrt(c1 / ((1 - c1) * ratio)))
    return jnp.where(moving, sign * jnp.sqrt(alpha2), 1.0)


def ring_polymer_langevin(force_fn: Callable, dt: float, kT: float, beads: int, *, tau: float | None = None,
                          thermostat: str = "pile-l", pile_lambda: float = 1.0) -> tuple[Callable, Callable]:
    """(init_fn, apply_fn) for path-integral MD at temperature kT (eV) with `beads` beads.

    `force_fn(R, **kw)` gives the physical forces (P, N, 3) of bead positions (P, N, 3). `tau` is the
    centroid thermostat time (PILE-L's Langevin 1/gamma, PILE-G's rescaling time); thermostat "none"
    leaves the centroid alone (TRPMD). Internal modes feel friction 2 `pile_lambda` w_k."""
    if thermostat not in THERMOSTATS:
        raise ConfigError(f"ring-polymer thermostat {thermostat!r}: choose one of {list(THERMOSTATS)}")
    if beads < 1:
        raise ConfigError(f"--beads must be >= 1, got {beads}")
    if thermostat != "none" and not (tau is not None and tau > 0):
        raise ConfigError(f"the {thermostat} centroid thermostat needs a time tau > 0, got {tau}")
    if not pile_lambda >= 0:
        raise ConfigError(f"the PILE lambda must be >= 0, got {pile_lambda}")
    kT_P = beads * kT
    omega_np = ring_frequencies(beads, kT)
    gamma = 2.0 * pile_lambda * omega_np
    gamma[0] = 1.0 / tau if thermostat == "pile-l" else 0.0
    c1_np = np.exp(-gamma * dt)

    def without_drift(momentum, mass):
        """PILE-G conserves the total momentum (no Langevin on the centroid, forces summing to zero):
        start it at zero, so that the rescaling's 3N - 3 degrees of freedom are the moving ones."""
        if thermostat != "pile-g" or momentum.shape[1] < 2:
            return momentum
        drift = jnp.sum(momentum, axis=(0, 1)) / (beads * jnp.sum(mass))
        return momentum - mass[None] * drift

    def init_fn(key, position, mass, momenta=None, **kw) -> RingPolymerState:
        position = jnp.asarray(position)
        if position.ndim == 2:  # every bead at the classical position
            position = jnp.broadcast_to(position, (beads,) + position.shape)
        if position.shape[0] != beads:
            raise ConfigError(f"bead positions have {position.shape[0]} beads, the integrator {beads}")
        dtype = position.dtype
        mass = jnp.reshape(jnp.asarray(mass, dtype), (-1, 1))
        key, split = jax.random.split(key)
        if momenta is None:
            momenta = jnp.sqrt(mass * kT_P) * jax.random.normal(split, position.shape, dtype)
        momenta = jnp.asarray(momenta, dtype)
        if momenta.ndim == 2:
            momenta = jnp.broadcast_to(momenta, position.shape)
        return RingPolymerState(position, without_drift(momenta, mass), force_fn(position, **kw), mass, key)

    def thermostat_step(state: RingPolymerState) -> RingPolymerState:
        dtype = state.momentum.dtype
        C = jnp.asarray(normal_mode_matrix(beads), dtype)
        c1 = jnp.asarray(c1_np, dtype)[:, None, None]
        key, split = jax.random.split(state.rng)
        p = to_modes(state.momentum, C)
        sigma = jnp.sqrt(kT_P * (1.0 - c1 * c1) * state.mass[None])
        p = c1 * p + sigma * jax.random.normal(split, p.shape, dtype)
        if thermostat == "pile-g":
            key, split = jax.random.split(key)
            c1g = jnp.exp(jnp.asarray(-dt / tau, dtype))
            kinetic = 0.5 * jnp.sum(p[0] ** 2 / state.mass)
            dof = p[0].size - (3 if p.shape[1] > 1 else 0)
            p = p.at[0].multiply(bussi_factor(split, kinetic, 0.5 * dof * kT_P, dof, c1g))
        return state.set(momentum=from_modes(p, C), rng=key)

    def apply_fn(state: RingPolymerState, **kw) -> RingPolymerState:
        dtype = state.position.dtype
        C = jnp.asarray(normal_mode_matrix(beads), dtype)
        omega = jnp.asarray(omega_np, dtype)
        p = state.momentum + 0.5 * dt * state.force
        q, p = free_ring_step(state.position, p, state.mass, omega, C, 0.5 * dt)
        state = thermostat_step(state.set(position=q, momentum=p))
        q, p = free_ring_step(state.position, state.momentum, state.mass, omega, C, 0.5 * dt)
        force = force_fn(q, **kw)
        return state.set(position=q, momentum=p + 0.5 * dt * force, force=force)

    return init_fn, apply_fn


class Estimators(NamedTuple):
    """Path-integral estimators of one configuration of the ring polymer (eV, Å)."""

    potential: jax.Array  # bead-averaged potential energy
    kinetic_primitive: jax.Array  # total quantum kinetic energy, primitive estimator
    kinetic_virial: jax.Array  # total, centroid-virial estimator
    kinetic_virial_atom: jax.Array  # (N,) per atom, centroid-virial
    gyration_atom: jax.Array  # (N,) radius of gyration of each atom's ring polymer
    spring: jax.Array  # ring-polymer spring energy
    bead_kinetic: jax.Array  # the beads' kinetic energy (equipartition at P T: a thermostat check)


def estimators(state: RingPolymerState, bead_energy: jax.Array, kT: float) -> Estimators:
    """Primitive and centroid-virial kinetic energies, potential energy and radii of gyration
    (Ceriotti et al. 2010, Sec. II; Herman, Bruskin, Berne, J. Chem. Phys. 76, 5150 (1982))."""
    beads = state.position.shape[0]
    q, m = state.position, state.mass  # (P, N, 3), (N, 1)
    centroid = jnp.mean(q, axis=0)
    omega_P = beads * kT / HBAR
    stretch = jnp.sum((q - jnp.roll(q, -1, axis=0)) ** 2, axis=(0, 2))  # (N,)
    spring = 0.5 * jnp.sum(m[:, 0] * omega_P**2 * stretch) if beads > 1 else jnp.zeros((), q.dtype)
    dof = q.shape[1] * q.shape[2]
    primitive = 0.5 * dof * beads * kT - spring / beads
    deviation = q - centroid[None]
    virial_atom = 1.5 * kT - 0.5 / beads * jnp.sum(deviation * state.force, axis=(0, 2))
    gyration = jnp.sqrt(jnp.mean(jnp.sum(deviation**2, axis=2), axis=0))
    bead_kinetic = 0.5 * jnp.sum(state.momentum**2 / m[None])
    return Estimators(jnp.mean(bead_energy), primitive, jnp.sum(virial_atom), virial_atom, gyration, spring,
                      bead_kinetic)


def exact_harmonic_kinetic(omega: float, kT: float) -> float:
    """Quantum kinetic energy of one harmonic degree of freedom: (hbar w / 4) coth(hbar w / 2 kT)."""
    x = HBAR * omega / (2.0 * kT)
    return 0.25 * HBAR * omega / np.tanh(x)

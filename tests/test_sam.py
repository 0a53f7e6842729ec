"""The SAM transform against hand-computed steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from legato_jax.train.sam import sam


def quad_loss(w):
    a = jnp.array([[3.0, 0.5], [0.5, 1.0]])
    return 0.5 * w["x"] @ a @ w["x"] + jnp.sum(w["y"] ** 4)


def test_sam_sgd_step_on_a_quadratic_by_hand():
    w = {"x": jnp.array([1.0, -2.0]), "y": jnp.array([0.5])}
    rho, lr = 0.1, 0.05
    opt = optax.chain(sam(rho), optax.sgd(lr))
    state = opt.init(w)
    g = jax.grad(quad_loss)(w)
    upd, _ = opt.update(g, state, w, grad_fn=jax.grad(quad_loss))
    # by hand
    gx = np.array([[3.0, 0.5], [0.5, 1.0]]) @ np.array([1.0, -2.0])
    gy = 4 * 0.5**3
    norm = np.sqrt((gx**2).sum() + gy**2)
    ex, ey = rho * gx / norm, rho * gy / norm
    gx_adv = np.array([[3.0, 0.5], [0.5, 1.0]]) @ (np.array([1.0, -2.0]) + ex)
    gy_adv = 4 * (0.5 + ey) ** 3
    np.testing.assert_allclose(upd["x"], -lr * gx_adv, rtol=1e-6)
    np.testing.assert_allclose(upd["y"], [-lr * gy_adv], rtol=1e-6)


def test_adaptive_sam_by_hand():
    w = {"x": jnp.array([1.0, -2.0]), "y": jnp.array([0.5])}
    rho, eta = 0.2, 0.01
    g = jax.grad(quad_loss)(w)
    upd, _ = sam(rho, adaptive=True, eta=eta).update(g, optax.EmptyState(), w, grad_fn=jax.grad(quad_loss))
    t = {k: np.abs(np.asarray(v)) + eta for k, v in w.items()}
    tg = np.concatenate([t[k] * np.asarray(g[k]) for k in ("x", "y")])
    e = {k: rho * t[k] ** 2 * np.asarray(g[k]) / np.linalg.norm(tg) for k in ("x", "y")}
    expected = jax.grad(quad_loss)({k: w[k] + e[k] for k in w})
    for k in w:
        np.testing.assert_allclose(upd[k], expected[k], rtol=1e-6)


def test_rho_zero_is_exactly_the_base_optimizer_and_jit_agrees():
    w = {"x": jnp.array([1.0, -2.0]), "y": jnp.array([0.5])}
    base = optax.adam(1e-2)
    with_sam = optax.chain(sam(0.0), optax.adam(1e-2))
    sb, ss = base.init(w), with_sam.init(w)
    wb = ws = w
    for _ in range(5):
        ub, sb = base.update(jax.grad(quad_loss)(wb), sb, wb)
        us, ss = with_sam.update(jax.grad(quad_loss)(ws), ss, ws, grad_fn=jax.grad(quad_loss))
        wb, ws = optax.apply_updates(wb, ub), optax.apply_updates(ws, us)
        for k in w:
            assert np.array_equal(np.asarray(wb[k]), np.asarray(ws[k]))
    opt = optax.chain(sam(0.05), optax.adam(1e-2))
    step = lambda w, s: opt.update(jax.grad(quad_loss)(w), s, w, grad_fn=jax.grad(quad_loss))
    u1, _ = step(w, opt.init(w))
    u2, _ = jax.jit(step)(w, opt.init(w))
    for k in w:
        np.testing.assert_allclose(u1[k], u2[k], rtol=1e-6)


def test_zero_gradient_gives_no_nan():
    w = {"x": jnp.zeros(2), "y": jnp.zeros(1)}
    zero_grad = lambda p: jax.tree_util.tree_map(jnp.zeros_like, p)
    opt = optax.chain(sam(0.05), optax.adam(1e-3), optax.contrib.reduce_on_plateau())
    upd, _ = opt.update(zero_grad(w), opt.init(w), w, grad_fn=zero_grad, value=jnp.array(1.0))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree_util.tree_leaves(upd))


def test_sam_needs_grad_fn():
    w = {"x": jnp.ones(2)}
    with pytest.raises(ValueError, match="grad_fn"):
        sam(0.1).update(w, optax.EmptyState(), w)

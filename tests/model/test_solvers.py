"""Forward solvers: convergence against analytic answers, per-sample stopping and masking."""

import pytest
import torch

from model.solvers import SOLVERS, get_solver, relative_residual

SOLVER_NAMES = sorted(SOLVERS)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_solves_cos_fixed_point(name):
    z, stats = get_solver(name)(torch.cos, torch.zeros(4, 3, dtype=torch.float64), (), 1e-10, 200)
    assert torch.allclose(z, torch.full_like(z, 0.7390851332151607), atol=1e-8)
    assert stats.converged.all()
    assert (stats.residual < 1e-10).all()


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_contractive_linear_map_matches_closed_form(name):
    # z = A z + b with ‖A‖₂ = 0.6 has the unique solution (I − A)⁻¹ b.
    torch.manual_seed(0)
    d = 6
    a = torch.randn(d, d, dtype=torch.float64)
    a = 0.6 * a / torch.linalg.matrix_norm(a, 2)
    b = torch.randn(5, d, dtype=torch.float64)
    z, stats = get_solver(name)(lambda z, b: z @ a.T + b, torch.zeros_like(b), (b,), 1e-12, 500)
    expected = torch.linalg.solve(torch.eye(d, dtype=torch.float64) - a, b.T).T
    assert torch.allclose(z, expected, atol=1e-9)
    assert stats.converged.all() and (stats.iterations < 500).all()


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_per_sample_stopping_and_masking(name):
    # Sample 0 contracts fast (rate 0.1), sample 1 slowly (rate 0.9): different iteration counts,
    # and f only ever sees the samples still running.
    rates = torch.tensor([[0.1], [0.9]], dtype=torch.float64)
    rows_seen: list[int] = []

    def f(z, rate):
        rows_seen.append(z.shape[0])
        return rate * z + 1.0

    z, stats = get_solver(name)(f, torch.zeros(2, 1, dtype=torch.float64), (rates,), 1e-6, 400)
    assert stats.converged.all()
    assert stats.iterations[0] < stats.iterations[1]
    assert sum(rows_seen) == int(stats.iterations.sum())  # no evaluation on converged samples
    assert torch.allclose(z, 1 / (1 - rates), rtol=1e-4)


def test_converged_sample_state_is_frozen():
    # Stop after exactly the iteration where sample 0 converges, then run longer: its state
    # must be identical, while sample 1 keeps moving.
    rates = torch.tensor([[0.05], [0.95]], dtype=torch.float64)
    solve = get_solver("fixed_point")
    z_short, s_short = solve(
        lambda z, r: r * z + 1.0, torch.zeros(2, 1).double(), (rates,), 1e-4, 5
    )
    z_long, _ = solve(lambda z, r: r * z + 1.0, torch.zeros(2, 1).double(), (rates,), 1e-4, 50)
    assert s_short.converged[0] and not s_short.converged[1]
    assert torch.equal(z_short[0], z_long[0])
    assert not torch.equal(z_short[1], z_long[1])


def test_unconverged_nan_loop_returns_best_finite_iterate():
    def f(z):
        return torch.where(z > 2.5, torch.full_like(z, float("nan")), z + 1.0)

    z, stats = get_solver("fixed_point")(f, torch.zeros(3, 2), (), 1e-3, 10)
    assert not stats.converged.any()
    assert (stats.iterations == 10).all()
    assert torch.isfinite(z).all()


def test_relative_residual_is_per_sample():
    fz = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(relative_residual(fz, z), torch.tensor([0.0, 1.0]))


def test_unknown_solver_lists_choices():
    with pytest.raises(KeyError, match="anderson"):
        get_solver("broyden-xyz")

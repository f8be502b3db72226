"""The fused Triton solver (solver="triton"), run on CPU by Triton's interpreter.

Triton 3.x reads ``TRITON_INTERPRET`` when ``triton.jit`` decorates a function (its own library
helpers such as ``tl.cdiv`` at ``import triton``). The fused solver builds its interpreted and
compiled kernels itself, calls only Triton builtins, and reads the variable at call time, only
to allow CPU tensors. So the autouse fixture below sets it per test, after this file has
imported triton (every test here runs in that order), and leaves the rest of the suite alone;
`test_cpu_needs_the_interpreter` checks that without it nothing runs. The interpreter runs
programs one after another, so it cannot see a missing barrier; `test_kernel_compiles_for_an_h100`
compiles the kernel for an H100 without one, and the CUDA test at the end runs it (skipped
without a GPU).
"""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("triton")
# The interpreter runs each kernel program in Python: seconds to minutes a test (`make test-slow`).
pytestmark = pytest.mark.slow

from models.layers import inverse_conv_triton as fused  # noqa: E402
from models.layers.inverse_conv import (  # noqa: E402
    CausalConv2d,
    FInCConv2d,
    InverseConv2d,
    causal_conv,
    causal_solve,
    orient,
    solve_dense,
)
from models.registry import randomize  # noqa: E402
from tests.test_inverse_conv import error_to_dense_solve, random_causal_kernel  # noqa: E402
from tests.test_layers import (  # noqa: E402
    check_logdet_forward,
    check_logdet_inverse,
    check_round_trip,
)


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def launches(monkeypatch):
    """Counts launches of the interpreted kernel."""
    kernel = fused.row_solve_kernel(True)
    count = [0]
    run = kernel.run

    def counting_run(*args, **kwargs):
        count[0] += 1
        return run(*args, **kwargs)

    monkeypatch.setattr(kernel, "run", counting_run)
    return count


def per_group_dense_solve(y, kernels, orientations):
    """Reference for `fused.solve_groups`: each group oriented, solved densely, oriented back."""
    groups = y.chunk(len(orientations), dim=1)
    solved = [
        orient(solve_dense(orient(yg, o), w), o)
        for yg, w, o in zip(groups, kernels, orientations, strict=True)
    ]
    return torch.cat(solved, dim=1)


def relative_error(x, expected):
    return ((x - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("c", [1, 3, 8, 12, 48])
@pytest.mark.parametrize("k", [2, 3])
def test_solve_matches_dense_solve(c, k):
    """Default tiles; C = 48 has rows of 144 values, three column blocks of 64."""
    b, h, w = (3, 5, 7) if c < 8 else (2, 4, 6) if c < 48 else (2, 3, 3)
    weight = random_causal_kernel(c, k)
    y = torch.randn(b, c, h, w)
    x = causal_solve(y, weight, "triton")
    assert error_to_dense_solve(x, y, weight) < 1e-10
    assert (causal_conv(x, weight) - y).abs().max() < 1e-10


@pytest.mark.parametrize("c,k", [(1, 1), (1, 3), (3, 2), (3, 3), (5, 3), (8, 2)])
def test_small_tiles_split_batch_and_rows(c, k):
    """Tiles of 2 images (the last one partial) and column blocks of 16 values that cut a
    pixel's channels apart (16 is not a multiple of 3 or 5): every block boundary is crossed,
    and the skipped tiles above the block diagonal must be exactly zero."""
    weight = random_causal_kernel(c, k, unit=False)
    y = torch.randn(5, c, 4, 7)
    x = fused.solve_groups(y, weight[None], (0,), block_b=2, block_n=16)
    assert error_to_dense_solve(x, y, weight) < 1e-10


def test_general_centre_and_strided_input():
    """A centre tap that is not triangular (as in the backward: the transposed kernel), and an
    input that is a strided view."""
    weight = random_causal_kernel(4, 3)
    weight[:, :, -1, -1] = torch.eye(4) + 0.3 * torch.randn(4, 4)
    y = torch.randn(3, 8, 5, 9)[:, ::2]
    for block_n in (16, None):
        x = fused.solve_groups(y, weight[None], (0,), block_b=2, block_n=block_n)
        assert error_to_dense_solve(x, y, weight) < 1e-10


@pytest.mark.parametrize("orientations", [(0, 1, 2, 3), (3, 0, 2, 1)])
@pytest.mark.parametrize("k", [2, 3])
def test_groups_and_orientations_match_per_group_dense(orientations, k):
    """FInC's four corners, one group each, in one launch; also in another order, so that
    group g really reads its own orientation."""
    kernels = torch.stack([random_causal_kernel(3, k, unit=False) for _ in orientations])
    y = torch.randn(3, 3 * len(orientations), 5, 6)
    x = fused.solve_groups(y, kernels, orientations, block_n=16)
    expected = per_group_dense_solve(y, kernels, orientations)
    assert relative_error(x, expected) < 1e-10


@pytest.mark.parametrize("c,k,shape", [(3, 3, (5, 7)), (8, 2, (4, 6)), (48, 3, (3, 3))])
def test_float32_against_float64_dense(c, k, shape):
    weight = random_causal_kernel(c, k, unit=False)
    y = torch.randn(3, c, *shape)
    expected = solve_dense(y, weight)
    x = causal_solve(y.float(), weight.float(), "triton")
    assert x.dtype == torch.float32
    assert relative_error(x.double(), expected) < 1e-5


# Each solve is one interpreted launch (tens of ms): the full gradcheck (one solve per input
# entry) runs on the smallest cases, the others use gradcheck's fast mode (random directions).
@pytest.mark.parametrize("c,k,fast", [(1, 2, False), (3, 3, True), (5, 2, True)])
def test_gradcheck_of_causal_solve(c, k, fast):
    """The `CausalSolve` path: backward by the same kernel on the flipped transposed kernel."""
    weight = random_causal_kernel(c, k).requires_grad_()
    y = torch.randn(2, c, 3, 4, requires_grad=True)
    solve = lambda a, b: causal_solve(a, b, "triton")  # noqa: E731
    assert torch.autograd.gradcheck(solve, (y, weight), fast_mode=fast)


@pytest.mark.parametrize("k,fast", [(2, False), (3, True)])
def test_gradcheck_of_grouped_solve(k, fast):
    """Four groups from four corners with non-unit diagonals: the layers' path."""
    kernels = torch.stack([random_causal_kernel(1, k, unit=False) for _ in range(4)])
    kernels.requires_grad_()
    y = torch.randn(1, 4, 2, 3, requires_grad=True)
    solve = lambda a, b: fused.grouped_causal_solve(a, b, (0, 1, 2, 3))  # noqa: E731
    assert torch.autograd.gradcheck(solve, (y, kernels), fast_mode=fast)


def triton_and_rows_layers(make):
    """The same random layer twice, with solver "triton" and "rows"."""
    fast = randomize(make("triton"), 0.2)
    reference = make("rows")
    reference.load_state_dict(fast.state_dict())
    return fast, reference


LAYERS = {
    "inverse_flow_k2": (lambda s: InverseConv2d(3, 2, s), (3, 4, 5)),
    "inverse_flow_k3_c8": (lambda s: InverseConv2d(8, 3, s), (8, 4, 4)),
    "finc_k3": (lambda s: FInCConv2d(8, 3, s), (8, 4, 5)),
    "finc_k2": (lambda s: FInCConv2d(4, 2, s), (4, 5, 4)),
    "cinc_top_left": (lambda s: CausalConv2d(3, 3, 0, s), (3, 4, 4)),
    "cinc_bottom_right_k2": (lambda s: CausalConv2d(5, 2, 3, s), (5, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_values_and_gradients_match_rows_solver(name):
    """Each layer's solve direction with "triton" against "rows" (itself checked against the
    dense solve and gradcheck): values, input gradient and every parameter gradient."""
    make, shape = LAYERS[name]
    fast, reference = triton_and_rows_layers(make)
    solve = "forward" if isinstance(fast, InverseConv2d) else "inverse"
    grads = []
    for layer in (fast, reference):
        y = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
        out = getattr(layer, solve)(y)
        out = out[0] if isinstance(out, tuple) else out
        probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
        (out * probe).sum().backward()
        grads.append([out, y.grad] + [p.grad for p in layer.parameters()])
    if isinstance(fast, CausalConv2d):
        assert fast.log_diag.abs().max() > 0.01  # the learnable diagonal is not the unit one
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: InverseConv2d(3, 2, "triton"), (3, 3, 3)),
        (lambda: FInCConv2d(4, 3, "triton"), (4, 3, 3)),
        (lambda: CausalConv2d(3, 2, 3, "triton"), (3, 3, 3)),
    ],
    ids=["inverse_flow", "finc", "cinc"],
)
def test_generic_exactness_checks(make, shape):
    """The registry harness of tests/test_layers.py: round trip, logdet against the autograd
    Jacobian + slogdet in both directions. The Jacobian of the solve takes one fused backward
    per output entry, hence one small image."""
    layer = randomize(make(), 0.2).eval()
    check_round_trip(layer, torch.randn(3, *shape))
    x = torch.randn(1, *shape)
    check_logdet_forward(layer, x)
    check_logdet_inverse(layer, x)


def test_round_trip_for_many_channels():
    """C >= 8, where the released Inverse-Flow CUDA code is wrong."""
    for layer in (InverseConv2d(16, 3, "triton"), FInCConv2d(16, 3, "triton")):
        with torch.no_grad():
            layer.weight.normal_(0, 0.2)
        x = torch.randn(2, 16, 4, 5)
        z, _ = layer(x)
        assert (layer.inverse(z) - x).abs().max() < 1e-10
        assert (z - x).abs().max() > 1e-2  # not the identity


def test_one_launch_per_solve(launches):
    """FInC's four groups: one launch forward, one for the input gradient in the backward."""
    layer = randomize(FInCConv2d(8, 3, "triton"), 0.2)
    z = torch.randn(2, 8, 6, 5, requires_grad=True)
    x = layer.inverse(z)
    assert launches[0] == 1
    x.sum().backward()
    assert launches[0] == 2
    causal_solve(torch.randn(1, 3, 9, 9), random_causal_kernel(3, 3), "triton")
    assert launches[0] == 3


def test_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    y, weight = torch.randn(1, 3, 4, 4), random_causal_kernel(3, 3)
    with pytest.raises(fused.TritonSolverUnavailable, match="set TRITON_INTERPRET=1"):
        causal_solve(y, weight, "triton")


def test_unsupported_inputs_raise_one_line_reasons():
    weight = random_causal_kernel(3, 3)
    y = torch.randn(1, 3, 4, 4)
    with pytest.raises(fused.TritonSolverUnavailable, match=r"^solver='triton' unavailable: dtype"):
        causal_solve(y.half(), weight.half(), "triton")
    with pytest.raises(fused.TritonSolverUnavailable, match="kernel dtype torch.float32"):
        causal_solve(y, weight.float(), "triton")


def test_missing_triton_is_named(monkeypatch):
    """Where triton cannot be imported the package still imports and the solver says why."""
    import models.layers

    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    monkeypatch.delitem(sys.modules, "models.layers.inverse_conv_triton")
    monkeypatch.delattr(models.layers, "inverse_conv_triton")
    layer = InverseConv2d(3, 3, "triton")  # constructing is fine
    with pytest.raises(RuntimeError, match="solver='triton' unavailable: triton not importable"):
        layer(torch.randn(1, 3, 4, 4))


@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION is unset")
@pytest.mark.parametrize("dtype,k,cg,block_n", [("fp32", 3, 3, 64), ("fp64", 2, 1, 16)])
def test_kernel_compiles_for_an_h100(dtype, k, cg, block_n):
    """The interpreter runs the kernel as Python; this compiles it to an sm_90 cubin (no GPU
    needed), which the interpreter never checks: types of the values carried through the row
    loop and the guarded taps, ``tl.dot`` shapes and dtypes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = fused.row_solve_kernel(False)
    pointers = {name: f"*{dtype}" for name in ("y_ptr", "x_ptr", "ops_ptr")}
    sizes = {n: "i32" for n in ("batch", "channels", "height", "width", "orientation_bits")}
    constants = {"GROUP_CHANNELS": cg, "KERNEL_SIZE": k, "BLOCK_B": 16, "BLOCK_N": block_n}
    signature = pointers | sizes | {name: "constexpr" for name in constants}
    constexprs = {(kernel.arg_names.index(n),): v for n, v in constants.items()}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert "bar.sync" in compiled.asm["ptx"]  # the barrier between rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "c,k,shape",
    [(1, 2, (28, 28)), (4, 3, (14, 14)), (3, 3, (32, 32)), (12, 3, (16, 16)), (48, 3, (4, 4))],
)
def test_compiled_kernel_on_cuda_float32_against_float64_dense(c, k, shape):
    """The compiled kernel (not the interpreter: CUDA tensors always compile) at the table
    shapes, float32 against the float64 dense solve, forward and FInC-style groups with their
    backward against the float64 rows solver."""
    cuda = torch.device("cuda")
    weight = random_causal_kernel(c, k, unit=False).to(cuda)
    y = torch.randn(10, c, *shape, device=cuda)
    expected = solve_dense(y, weight)
    x = causal_solve(y.float(), weight.float(), "triton")
    assert relative_error(x.double(), expected) < 1e-5
    if c % 4 == 0:
        fast, reference = triton_and_rows_layers(lambda s: FInCConv2d(c, k, s))
        results = []
        for layer in (fast.to(cuda).float(), reference.to(cuda)):
            z = y.to(next(layer.parameters()).dtype, copy=True).requires_grad_()
            out = layer.inverse(z)
            out.square().sum().backward()
            results.append([out, z.grad, layer.weight.grad])
        for a, b in zip(*results, strict=True):
            assert relative_error(a.double(), b) < 1e-5

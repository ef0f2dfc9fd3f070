"""One call of every CUDA kernel of sidkernels, for ``compute-sanitizer --tool memcheck`` (test_cuda_ops.py).

    python -m tests.csrc.memcheck_ops

Covers the vector path with unaligned sample edges ([3, 37] fp32: D is not a multiple of 8), the scalar
path (the same shapes at a misaligned address), and one-chunk and many-chunk samples (bf16 [2, 3, 255, 257]:
the losses' finalize kernels run).
"""
import torch

from sidkernels import cuda_ext
from sidkernels.ops import kernel_op


def _inputs(shape, dtype, misaligned):
    base = torch.randn(shape[0] + int(misaligned), *shape[1:], device="cuda").to(dtype)
    return base[1:] if misaligned else base


def run_all(shape, dtype, misaligned):
    x, F, g = (_inputs(shape, dtype, misaligned) for _ in range(3))
    n = shape[0]
    sigma = torch.rand(n, device="cuda") + 0.1
    seed = torch.tensor([123], device="cuda")
    op = {name: kernel_op(name, "cuda") for name in ("add_noise", "precond_in", "precond_in_bwd", "precond_out",
                                                     "precond_out_bwd", "sid_loss", "fake_score_loss", "rowscale",
                                                     "distance", "distance_bwd")}
    op["add_noise"](x, sigma, seed, 0, 0.5, torch.bfloat16, True)
    op["precond_in"](x, sigma, 1, 0.5, torch.float16)
    op["precond_in_bwd"](g, sigma, F, 2, 0.5, torch.float32)
    op["precond_out"](x, F, sigma, 0, 0.5)
    op["precond_out_bwd"](g, sigma, 0, 0.5, torch.float32, torch.bfloat16)
    _, scale, ga, _, _ = op["sid_loss"](x, F, g, 1.2, 1e-5, True, True, True, True)
    op["fake_score_loss"](x, F, sigma, 0.5, True)
    op["rowscale"](torch.ones((), device="cuda").expand(n), scale, ga, 1.0, torch.float32)
    _, scale = op["distance"](x, F, 2, 0.01)
    op["distance_bwd"](torch.ones((), device="cuda").expand(n), scale, x, F, 1, torch.float32, dtype)


def main():
    cuda_ext.require()
    for shape, dtype in (((3, 37), torch.float32), ((2, 3, 255, 257), torch.bfloat16)):
        for misaligned in (False, True):
            run_all(shape, dtype, misaligned)
    torch.cuda.synchronize()
    print("all kernels ran")


if __name__ == "__main__":
    main()

"""One call of every CUDA kernel of sidkernels, for ``compute-sanitizer --tool memcheck`` (test_cuda_ops.py).

    python -m tests.cuda_ext.memcheck_ops

Every kernel case of every op (sidkernels.ops.OPS) on a vector-path shape with unaligned sample edges ([3, 37]
fp32: D is not a multiple of 8), the scalar path (the same shape at a misaligned address), and one-chunk and
many-chunk samples (bf16 [2, 3, 255, 257]: the losses' finalize kernels run).
"""
import torch

from sidkernels import cuda_ext
from sidkernels.ops import OPS


def _misaligned(args):
    def shift(t):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            return t
        base = torch.empty(t.numel() + 8, dtype=t.dtype, device=t.device)
        view = base[1:1 + t.numel()].view(t.shape)
        view.copy_(t)
        return view
    return tuple(shift(a) for a in args)


def main():
    cuda_ext.require()
    calls = 0
    for shape, dtype in (((3, 37), torch.float32), ((2, 3, 255, 257), torch.bfloat16)):
        for op in OPS.values():
            for kernel, args in op.kernel_cases(shape, dtype, torch.device("cuda")).values():
                for variant in (args, _misaligned(args)):
                    kernel.variant("cuda")(*[a.detach() if isinstance(a, torch.Tensor) else a for a in variant])
                    calls += 1
    torch.cuda.synchronize()
    print(f"all kernels ran ({calls} calls)")


if __name__ == "__main__":
    main()

"""One full SiD iteration captured for device ``cuda`` in a CUDA build of torch on a machine without a GPU or
driver, run by test_step_capture.py in that torch's interpreter.  Prints one JSON report (the last line).

    python -m tests.cuda_ext.step_capture_probe

The iteration is the trainer's (sidkernels.distill.trainer.SiDTrainer.step with one accumulation round): the
fake-score objective and its gradients to the fake score's weights, then the generator objective (fused from
the networks' raw outputs) and its gradients to G's weights, with the fused ops pinned to the Triton backend
(``use_backend("triton")``), value checks off, bf16 autocast and channels_last, on the mixture preset's
networks (EDM-preconditioned SongUNet, 8x8x1, 32 channels), batch 2, all on fake CUDA tensors.

Stages, each recorded as ``{"ok": bool, "detail": ...}`` so the report is always printed:

* ``autocast``: ``torch.autocast("cuda")`` disables itself without a driver ("CUDA is not available");
  the probe answers its two availability questions (``amp_definitely_not_available``, ``is_bf16_supported``)
  so the CUDA autocast dispatch key runs on the fake CUDA tensors, and checks that it does (bf16 convolutions).
* ``direct_backward``: ``torch.autograd.grad`` on fake CUDA tensors, the plain way, and how it fails.
* ``a_capture``: the iteration as one ATen graph on device ``cuda`` with make_fx.  Without a driver the
  autograd engine cannot run a backward whose nodes are on CUDA (see ``direct_backward``), so the capture is
  made in three steps: (1) each objective's forward traced on fake CUDA tensors under bf16 autocast (the
  autocast casts and the Triton custom ops land in the graph), (2) those forward graphs retargeted to the meta
  device and differentiated there by make_fx through the autograd engine (the custom ops' autograd formulas,
  the same on every device), (3) the resulting forward+backward graph retargeted to ``cuda`` and traced again
  on fake CUDA tensors, so every op's CUDA fake kernel checks it.  Reports node and custom-op counts and the
  host-sync ops (none may appear; tracing with fake tensors would also raise on one).
* ``b_dynamo``: ``torch._dynamo.explain`` of both objectives as the trainer compiles them, on fake CUDA
  inputs: graph count and graph breaks; then ``torch.compile(fullgraph=True)`` with a graph-capturing backend.
* ``c_inductor``: Inductor's ``compile_fx`` (``compile_threads=1``) on the captured fake-objective forward graph
  (``SIDKERNELS_PROBE_INDUCTOR_GRAPH=step``: the whole iteration's graph, same stops, about 5x slower) as an
  inference graph, with the default config and then with joint-graph constant folding off, recording where
  each stops.  On torch 2.14.1 both stop before code generation, where Inductor asks the CUDA runtime:
  constant folding runs ``aten.full(device="cuda:0")`` for real, and the convolution lowering
  (``use_triton_template`` -> ``is_big_gpu``) reads ``torch.cuda.get_device_properties``; so no Triton
  source exists to compile for ``GPUTarget("cuda", 90, 32)`` (the fused ops' own kernels are compiled that
  way by tests/ops/lowering_probe.py).
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import time
import traceback

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.func import functional_call

import sidkernels as sk
from sidkernels._checks import value_checks
from sidkernels.distill.mixture_teacher import mixture_network
from sidkernels.distill.sid_losses import fake_score_loss_on_generator, generator_loss

BATCH = 2
INIT_SIGMA, ALPHA, TMAX = 2.5, 1.2, 800.0
SCALE_FAKE, SCALE_G = 1.0 / BATCH, 100.0 / BATCH
HOST_SYNC = ("aten._local_scalar_dense", "aten.nonzero", "aten.is_nonzero", "aten.item")
STAGE_SECONDS = {}


def _error(exc: BaseException) -> dict:
    lines = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)
    return {"exception": type(exc).__name__, "first_line": lines[0][:500] if lines else "",
            "where": [f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in where[-4:]]}


def stage(report: dict, name: str):
    """Run one stage: its function returns the detail; an exception is recorded, never raised."""
    def wrap(fn):
        t0 = time.perf_counter()
        try:
            report[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # the failure is the finding
            report[name] = {"ok": False, "detail": _error(exc)}
        STAGE_SECONDS[name] = round(time.perf_counter() - t0, 1)
        return fn
    return wrap


@contextlib.contextmanager
def cuda_autocast_without_driver():
    """Let ``torch.autocast("cuda")`` enable itself: it asks two questions only a driver can answer."""
    import torch.cuda.amp.common as amp_common
    saved = amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported
    amp_common.amp_definitely_not_available = lambda: False
    torch.cuda.is_bf16_supported = lambda *args, **kwargs: True
    try:
        yield
    finally:
        amp_common.amp_definitely_not_available, torch.cuda.is_bf16_supported = saved


def _context():
    stack = contextlib.ExitStack()
    stack.enter_context(value_checks(False))
    stack.enter_context(sk.use_backend("triton"))
    stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
    return stack


def _counts(gm: torch.fx.GraphModule) -> dict:
    targets = collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
    custom = {k: v for k, v in sorted(targets.items()) if k.startswith("sidkernels.")}
    convs = [n for n in gm.graph.nodes if n.op == "call_function" and "convolution" in str(n.target)]
    devices = sorted({str(v.device) for n in gm.graph.nodes
                      for v in torch.utils._pytree.tree_leaves(n.meta.get("val")) if isinstance(v, torch.Tensor)})
    return {"nodes": len(gm.graph.nodes), "call_function": sum(targets.values()),
            "custom_ops": custom, "custom_op_calls": sum(custom.values()),
            "host_sync_ops": {k: v for k, v in targets.items() if k.startswith(HOST_SYNC)},
            "convolutions": len(convs),
            "convolution_dtypes": dict(collections.Counter(
                str(v.dtype) for n in convs for v in torch.utils._pytree.tree_leaves(n.meta["val"])
                if isinstance(v, torch.Tensor))),
            "channels_last_convolutions": sum(
                isinstance(n.meta["val"], torch.Tensor) and n.meta["val"].dim() == 4
                and n.meta["val"].is_contiguous(memory_format=torch.channels_last) for n in convs),
            "value_devices": devices}


def _retarget(gm: torch.fx.GraphModule, device: str) -> torch.fx.GraphModule:
    """The same graph with every ``device=`` argument (factory functions, copies) moved to ``device``."""
    def move(value):
        if isinstance(value, torch.device):
            return torch.device(device)
        return value
    for node in gm.graph.nodes:
        node.args = torch.fx.node.map_aggregate(node.args, move)
        node.kwargs = torch.fx.node.map_aggregate(node.kwargs, move)
    gm.recompile()
    return gm


class Iteration:
    """The networks (as parameter dicts) and the two objectives of one SiD iteration, on ``mode``'s fake CUDA
    tensors."""

    def __init__(self, mode: FakeTensorMode):
        torch.manual_seed(0)
        nets = [mixture_network() for _ in range(3)]
        with mode:
            self.G, self.fake, self.teacher = [n.to("cuda", memory_format=torch.channels_last) for n in nets]
            self.z = torch.randn(BATCH, 1, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
        for net in (self.G, self.fake, self.teacher):
            net.eval().requires_grad_(False)
        self.params = {name: dict(net.named_parameters()) for name, net in
                       (("G", self.G), ("fake", self.fake), ("teacher", self.teacher))}
        self.buffers = {name: dict(net.named_buffers()) for name, net in
                        (("G", self.G), ("fake", self.fake), ("teacher", self.teacher))}

    def _call(self, name, net, params):
        return lambda *args, **kwargs: functional_call(net, ({**params, **self.buffers[name]}), args, kwargs)

    def fake_objective(self, g_params, fake_params, z):
        G = self._call("G", self.G, g_params)
        fake = self._call("fake", self.fake, fake_params)
        return fake_score_loss_on_generator(G, fake, z, None, init_sigma=INIT_SIGMA, scale=SCALE_FAKE,
                                            net_dtype=torch.bfloat16)

    def generator_objective(self, g_params, fake_params, teacher_params, z):
        teacher = _Bound(self.teacher, self._call("teacher", self.teacher, teacher_params))
        fake = _Bound(self.fake, self._call("fake", self.fake, fake_params))
        return generator_loss(self._call("G", self.G, g_params), teacher, fake, z, None, init_sigma=INIT_SIGMA,
                              alpha=ALPHA, tmax=TMAX, scale=SCALE_G, net_dtype=torch.bfloat16, raw=True)


class _Bound:
    """A network called with given parameters that still answers the attributes the objectives read."""

    def __init__(self, net, call):
        self._net, self._call = net, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._net, name)


def capture(report: dict) -> None:
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    it = Iteration(mode)
    names = {k: list(v) for k, v in it.params.items()}

    # (1) the forwards on fake CUDA tensors, bf16 autocast, Triton custom ops
    def fake_fwd(g, f, z):
        with _context():
            return it.fake_objective(dict(zip(names["G"], g)), dict(zip(names["fake"], f)), z)

    def gen_fwd(g, f, t, z):
        with _context():
            return it.generator_objective(dict(zip(names["G"], g)), dict(zip(names["fake"], f)),
                                          dict(zip(names["teacher"], t)), z)

    g, f, t = (list(it.params[k].values()) for k in ("G", "fake", "teacher"))
    with mode, cuda_autocast_without_driver():
        # the leaves that take gradients require them while tracing: the fused ops choose from that whether to
        # save their backward's operands (``want_grad``), and the traced forward keeps that choice
        trains = lambda ps: [p.detach().requires_grad_(True) for p in ps]  # noqa: E731
        fwd_fake = make_fx(fake_fwd)(g, trains(f), it.z)
        fwd_gen = make_fx(gen_fwd)(trains(g), f, t, it.z)
    report["forward_graphs"] = {"fake_objective": _counts(fwd_fake), "generator_objective": _counts(fwd_gen)}
    _retarget(fwd_fake, "meta")
    _retarget(fwd_gen, "meta")

    # (2) one iteration, differentiated on the meta device
    def iteration(g, f, t, z_fake, z_gen):
        f = [p.detach().requires_grad_(True) for p in f]
        loss_fake = fwd_fake(g, f, z_fake)
        grads_fake = torch.autograd.grad(loss_fake, f)
        g = [p.detach().requires_grad_(True) for p in g]
        loss_gen = fwd_gen(g, [p.detach() for p in f], t, z_gen)
        grads_gen = torch.autograd.grad(loss_gen, g)
        return loss_fake.detach(), loss_gen.detach(), list(grads_fake), list(grads_gen)

    meta = [[torch.empty_strided(p.shape, p.stride(), dtype=p.dtype, device="meta") for p in ps] for ps in (g, f, t)]
    z_meta = torch.empty_strided(it.z.shape, it.z.stride(), device="meta")
    joint = make_fx(iteration, tracing_mode="fake")(*meta, z_meta, z_meta)
    report["meta_graph_nodes"] = len(joint.graph.nodes)

    # (3) retargeted to cuda and traced again on fake CUDA tensors
    _retarget(joint, "cuda:0")  # the index the forward graphs had (Inductor asks the driver for a missing one)
    with mode:
        z2 = torch.randn(BATCH, 1, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
        step = make_fx(joint)(g, f, t, it.z, z2)
    counts = _counts(step)
    outputs = [n for n in step.graph.nodes if n.op == "output"][0].args[0]
    flat = torch.fx.node.map_aggregate(outputs, lambda n: n)
    vals = [n.meta["val"] for n in torch.utils._pytree.tree_leaves(flat) if isinstance(n, torch.fx.Node)]
    counts["outputs"] = {"count": len(vals), "devices": sorted({str(v.device) for v in vals}),
                         "grads_match_params": [list(v.shape) for v in vals[2:2 + len(f)]] == [list(p.shape) for p in f]
                         and [list(v.shape) for v in vals[2 + len(f):]] == [list(p.shape) for p in g]}
    counts["parameters"] = {k: sum(p.numel() for p in v.values()) for k, v in it.params.items()}
    _retarget(fwd_fake, "cuda:0")
    report["_captured"] = {"mode": mode, "step": (step, (g, f, t, it.z, z2)), "fake_forward": (fwd_fake, (g, f, it.z))}
    return counts


def dynamo(report: dict) -> dict:
    """explain and fullgraph compile of both objectives, as the trainer calls them, on fake CUDA inputs."""
    import torch._dynamo
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    it = Iteration(mode)
    detail = {}
    it.fake.train().requires_grad_(True)

    # as the trainer: the objective is what is compiled; the backend pin, value checks and autocast are
    # entered around the call (SiDTrainer._update)
    def fake_round(z):
        return fake_score_loss_on_generator(it.G, it.fake, z, None, init_sigma=INIT_SIGMA, scale=SCALE_FAKE,
                                            net_dtype=torch.bfloat16)

    def generator_round(z):
        return generator_loss(it.G, it.teacher, it.fake, z, None, init_sigma=INIT_SIGMA, alpha=ALPHA, tmax=TMAX,
                              scale=SCALE_G, net_dtype=torch.bfloat16, raw=True)

    for name, fn, train in (("fake_objective", fake_round, it.fake), ("generator_objective", generator_round, it.G)):
        # ambient: called inside the FakeTensorMode (the working way); inputs_only (fake inputs, no mode active)
        # is tried once, on the fake objective, to show how it fails
        wheres = ("ambient", "inputs_only") if name == "fake_objective" else ("ambient",)
        for net in (it.G, it.fake):
            net.eval().requires_grad_(False)
        train.train().requires_grad_(True)
        entry = detail[name] = {}
        torch._dynamo.reset()
        for where in wheres:
            try:
                with contextlib.ExitStack() as stack:
                    stack.enter_context(cuda_autocast_without_driver())
                    if where == "ambient":
                        stack.enter_context(mode)
                    stack.enter_context(_context())
                    out = torch._dynamo.explain(fn)(it.z)
                entry[f"explain_{where}"] = {
                    "ok": True, "graph_count": out.graph_count, "graph_break_count": out.graph_break_count,
                    "break_reasons": [str(r.reason)[:300] for r in out.break_reasons],
                    "ops_per_graph": [len(ops) for ops in out.ops_per_graph]}
            except Exception as exc:
                entry[f"explain_{where}"] = {"ok": False, **_error(exc)}
            torch._dynamo.reset()
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        try:
            with mode, cuda_autocast_without_driver(), _context():
                compiled = torch.compile(fn, fullgraph=True, backend=backend)
                loss = compiled(it.z)
            custom = sum(1 for g in graphs for n in g.graph.nodes
                         if n.op == "call_function" and "sidkernels" in str(n.target))
            entry["compile_fullgraph"] = {"ok": True, "graphs": len(graphs), "custom_op_calls": custom,
                                          "loss": [list(loss.shape), str(loss.dtype), str(loss.device)]}
        except Exception as exc:
            entry["compile_fullgraph"] = {"ok": False, **_error(exc)}
        torch._dynamo.reset()
    ok = [e for d in detail.values() for e in d.values() if e.get("ok")]
    if not ok:
        raise RuntimeError("no dynamo attempt succeeded: " + json.dumps(detail)[:2000])
    return detail


def _flat(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The graph with flat inputs and a flat output tuple (what Inductor's entry points take)."""
    gm.graph._codegen = torch.fx.graph.CodeGen()
    out = [n for n in gm.graph.nodes if n.op == "output"][0]
    out.args = (tuple(torch.utils._pytree.tree_leaves(out.args[0])),)
    gm.recompile()
    return gm


def inductor(captured):
    """Inductor (``compile_fx``, as torch.compile's inductor backend calls it) on a captured cuda graph, as an
    inference graph (its inputs take no gradient), twice: with the default config, then with the joint-graph
    constant folding (which runs ``aten.full`` for real) off, to get past the first stop."""
    if captured is None:
        raise RuntimeError("no captured graph (stage a failed)")
    from torch._inductor import config
    from torch._inductor.compile_fx import compile_fx
    mode = captured["mode"]
    which = os.environ.get("SIDKERNELS_PROBE_INDUCTOR_GRAPH", "fake_forward")
    gm, inputs = captured[which]
    flat_inputs = [x.detach() for x in torch.utils._pytree.tree_leaves(inputs)]
    gm = _flat(gm)
    detail = {"graph": which, "graph_nodes": len(gm.graph.nodes), "inputs": len(flat_inputs), "attempts": {}}
    for name, patch in (("default", {}), ("no_constant_folding", {"joint_graph_constant_folding": False})):
        t0 = time.perf_counter()
        with config.patch(compile_threads=1, **patch), mode:
            try:
                compiled = compile_fx(gm, flat_inputs)
                attempt = {"ok": True, "type": type(compiled).__name__}
            except Exception as exc:
                text = traceback.format_exc()
                attempt = {"ok": False, **_error(exc),
                           "inductor_frames": [line.strip() for line in text.splitlines()
                                               if "torch/_inductor/" in line][-8:],
                           "while": next((line.strip() for line in text.splitlines()
                                          if line.strip().startswith(("While executing", "target:"))), None)}
        attempt["seconds"] = round(time.perf_counter() - t0, 1)
        detail["attempts"][name] = attempt
        if attempt["ok"]:
            break
    return detail


def main() -> None:
    t0 = time.perf_counter()
    import triton
    report = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "triton": triton.__version__,
              "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
              "triton_interpret": os.environ.get("TRITON_INTERPRET", "")}

    @stage(report, "autocast")
    def _():
        mode = FakeTensorMode()
        with mode:
            x = torch.randn(2, 3, 8, 8, device="cuda")
            w = torch.randn(4, 3, 3, 3, device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                plain = torch.nn.functional.conv2d(x, w).dtype
            with cuda_autocast_without_driver(), torch.autocast("cuda", dtype=torch.bfloat16):
                answered = torch.nn.functional.conv2d(x, w).dtype
        assert answered == torch.bfloat16, answered
        return {"conv_dtype_plain_autocast": str(plain), "conv_dtype_with_answers": str(answered)}

    @stage(report, "direct_backward")
    def _():
        with FakeTensorMode():
            x = torch.randn(3, device="cuda", requires_grad=True)
            try:
                torch.autograd.grad((x * 2).sum(), [x])
            except Exception as exc:
                return {"fails": True, **_error(exc)}
        return {"fails": False}

    @stage(report, "a_capture")
    def _():
        return capture(report)

    @stage(report, "b_dynamo")
    def _():
        return dynamo(report)

    captured = report.pop("_captured", None)

    @stage(report, "c_inductor")
    def _():
        return inductor(captured)

    report["stage_seconds"] = STAGE_SECONDS
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()

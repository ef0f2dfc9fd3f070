"""Memory model of a SiD-LSG run: the predicted peak device memory per ``batch_gpu``.

    peak(b) = resident + max(grad_fake + act_fake(b), grad_G + act_G(b))
    resident = teacher + G + fake weights + Adam states (G, fake) + EMA (if on the device)
               + text encoder (or the embedding table) + VAE
    act_phase(b) = saved(b) + max(recompute(b), cast_cache),   saved and recompute linear in b

The two phases are the fake-score step and the generator step: only one network's gradients exist at a time
(the trainer frees them after each optimiser step), and the peak of a phase is at the end of its forward,
when every tensor autograd keeps for the backward is alive.

* **Static bytes are exact**: every parameter of the networks as built (on the meta device: no memory, no
  weights) times its storage dtype; gradients as the trainable parameters; Adam's two moments per parameter
  plus its 4-byte ``step`` per tensor.
* **Activations are measured**: the saved-tensor hooks of autograd count the bytes of every tensor the
  trainer's own objectives (:mod:`sidkernels.latent.lsg_losses`) keep for the backward, each storage once,
  parameters excluded, at micro-batches 1 and 2 (the slope is the per-sample cost, the rest is batch-free:
  e.g. bf16 copies of fp32 weights).  On the meta device this costs nothing at SD 1.5's full size.  Two
  things the meta device does not do by itself are emulated (:class:`DevicePolicy`): CUDA autocast's cast
  lists (bf16 for convolutions, linear layers, matmuls and attention; fp32 for group and layer norm and
  upsampling; everything else in its inputs' dtype) and the attention kernel (flash attention keeps q, k, v,
  the output and the fp32 log-sum-exp, not the L x L weights of the math path).
* **Gradient checkpointing** is accounted for by running each checkpointed block through a probe: its inputs
  (kept by the checkpoint) count towards the phase, the tensors it saves are counted apart, and the largest
  block's count is added once (its recomputation during the backward).
* **Autocast's cast cache**: the bf16 copies of trainable fp32 weights live until the forward's autocast
  region ends even where no saved tensor holds them (checkpointed blocks); the larger of that cache and the
  largest recomputed block is added (:class:`PhaseActivations`).

Not modelled: the caching allocator's fragmentation and reserve, cuDNN/cuBLAS workspaces, the transient
buffers of a single op, and the activation gradients in flight during the backward; the measured peak on a
GPU is printed beside the prediction for that reason.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import sidkernels as sk
from sidkernels.latent.config import LatentConfig
from sidkernels.latent.denoiser import LatentDenoiser
from sidkernels.latent.lsg_losses import Draw, fake_score_loss_on_generator, generator_loss

GIB = 2 ** 30

# functions whose floating inputs autocast casts to the low-precision dtype (CUDA and CPU alike)
LOW_PRECISION = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                           "conv_transpose3d", "linear", "matmul", "__matmul__", "mm", "bmm", "baddbmm", "addmm",
                           "addbmm", "einsum", "scaled_dot_product_attention"})
# functions CUDA autocast runs in fp32 (CPU autocast runs them in their inputs' dtype)
CUDA_FP32 = frozenset({"group_norm", "layer_norm", "interpolate", "softmax", "log_softmax", "exp", "log", "pow",
                       "rsqrt", "cumsum", "logsumexp"})


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _nbytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


class SavedTensorCounter:
    """Bytes of the tensors autograd saves for the backward, each storage counted once, ``exclude`` storages
    (parameters, buffers) not at all; :meth:`checkpoint_probe` counts checkpointed blocks apart.

    Storages are told apart by address, so every counted tensor is kept referenced until the counter goes
    (an address freed and reused would otherwise pass for one already counted).
    """

    def __init__(self, exclude=()):
        self.exclude = {_storage_key(t) for t in exclude}
        self._alive = list(exclude)
        self.seen: set[int] = set()
        self.total = 0
        self.region_peak = 0
        self._stack = contextlib.ExitStack()

    def add(self, t: torch.Tensor, seen: set[int] | None = None) -> int:
        seen = self.seen if seen is None else seen
        key = _storage_key(t)
        if key in self.exclude or key in seen:
            return 0
        seen.add(key)
        self._alive.append(t)
        return _nbytes(t)

    def _pack(self, t):
        self.total += self.add(t)
        return t

    def __enter__(self):
        self._stack.enter_context(torch.autograd.graph.saved_tensors_hooks(self._pack, _identity))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def checkpoint_probe(self, module, *args):
        """A diffusers ``gradient_checkpointing_func``: count the block's tensor inputs (the checkpoint keeps
        them), run it counting its saved tensors apart, keep the largest such count."""
        for a in args:
            if isinstance(a, torch.Tensor):
                self.total += self.add(a)
        region_seen = set(self.seen)
        tally = [0]

        def pack(t):
            tally[0] += self.add(t, region_seen)
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, _identity):
            out = module(*args)
        self.region_peak = max(self.region_peak, tally[0])
        return out

    def unsaved(self, tensors) -> int:
        """Bytes of ``tensors`` (each storage once) that are neither counted nor excluded."""
        seen = set(self.seen)
        return sum(self.add(t, seen) for t in tensors)


@dataclasses.dataclass
class PhaseActivations:
    """One phase's activation bytes: ``saved`` (the tensors autograd keeps, checkpointed blocks' inputs
    included), ``recompute`` (the largest checkpointed block's saved tensors, alive while it is recomputed in
    the backward) and ``cast_cache`` (autocast's cached low-precision copies of trainable weights that no
    saved tensor already holds, alive until the forward's autocast region ends)."""
    saved: int
    recompute: int = 0
    cast_cache: int = 0

    @property
    def peak(self) -> int:
        """End of the forward (saved + cast cache) or start of the backward (saved + one recomputed block)."""
        return self.saved + max(self.recompute, self.cast_cache)


def _identity(t):
    return t


class DevicePolicy(TorchFunctionMode):
    """Run a forward on any device (the meta device included) with the autocast cast lists and the fused
    attention kernel of ``device_type`` (``"cuda"`` or ``"cpu"``); ``dtype`` None is an fp32 run (attention
    routing only).  Casts of leaf tensors that require grad are cached for the context, as autocast does."""

    def __init__(self, device_type: str, dtype: torch.dtype | None):
        super().__init__()
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"device_type must be 'cuda' or 'cpu', got {device_type!r}")
        self.device_type, self.dtype = device_type, dtype
        self.fp32 = CUDA_FP32 if device_type == "cuda" else frozenset()
        self._cache: dict[int, torch.Tensor] = {}

    def cached_casts(self) -> list[torch.Tensor]:
        return list(self._cache.values())

    def _cast(self, value, dtype):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype \
                and value.dtype != torch.float64:
            if value.is_leaf and value.requires_grad:
                key = id(value)
                if key not in self._cache:
                    self._cache[key] = value.to(dtype)
                return self._cache[key]
            return value.to(dtype)
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, dtype) for v in value)
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.dtype is not None and name in LOW_PRECISION:
            args, kwargs = self._cast(args, self.dtype), {k: self._cast(v, self.dtype) for k, v in kwargs.items()}
        elif self.dtype is not None and name in self.fp32:
            args, kwargs = self._cast(args, torch.float32), {k: self._cast(v, torch.float32) for k, v in kwargs.items()}
        if name == "scaled_dot_product_attention":
            return self._attention(*args, **kwargs)
        return func(*args, **kwargs)

    def _attention(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
        """The fused attention the device would pick: its autograd keeps q, k, v, out and log-sum-exp."""
        if attn_mask is not None or dropout_p:
            return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
        if self.device_type == "cpu":
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, is_causal,
                                                                              scale=scale)[0]
        if q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0:
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, is_causal, scale=scale)[0]
        return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, is_causal,
                                                                      scale=scale)[0]


# ---------------------------------------------------------------------------------------------- static bytes
def param_bytes(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad or not trainable_only)


def adam_state_bytes(module: torch.nn.Module) -> int:
    """Adam/AdamW state of every parameter: exp_avg and exp_avg_sq in the parameter's dtype, a 4-byte step."""
    return sum(2 * p.numel() * p.element_size() + 4 for p in module.parameters())


@dataclasses.dataclass
class ActivationFit:
    """A phase's activation bytes as a function of the micro-batch b, fitted to measurements at b = 1 and 2:
    ``saved(b)`` and ``recompute(b)`` are linear in b, the cast cache does not depend on b, and
    ``activations(b) = saved(b) + max(recompute(b), cast_cache)`` (see :class:`PhaseActivations`)."""
    saved_const: int
    saved_per_sample: int
    recompute_const: int = 0
    recompute_per_sample: int = 0
    cast_cache: int = 0

    @classmethod
    def from_measurements(cls, one: PhaseActivations, two: PhaseActivations) -> ActivationFit:
        saved, recompute = two.saved - one.saved, two.recompute - one.recompute
        return cls(one.saved - saved, saved, one.recompute - recompute, recompute, one.cast_cache)

    def at(self, batch_gpu: int) -> int:
        saved = self.saved_const + batch_gpu * self.saved_per_sample
        recompute = self.recompute_const + batch_gpu * self.recompute_per_sample
        return saved + max(recompute, self.cast_cache)

    def describe(self) -> str:
        text = f"saved {self.saved_per_sample / GIB:.3f}/sample + {self.saved_const / GIB:.2f}"
        if self.recompute_per_sample or self.recompute_const:
            text += (f", recomputed block {self.recompute_per_sample / GIB:.3f}/sample"
                     f" + {self.recompute_const / GIB:.2f}")
        if self.cast_cache:
            text += f", bf16 weight-cast cache {self.cast_cache / GIB:.2f}"
        return text


@dataclasses.dataclass
class MemoryModel:
    static: dict[str, int]               # resident bytes by component
    grads: dict[str, int]                # gradient bytes of the network trained in each phase
    act: dict[str, ActivationFit]        # activation bytes of each phase as a function of batch_gpu
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def resident(self) -> int:
        return sum(self.static.values())

    def activations(self, phase: str, batch_gpu: int) -> int:
        return self.act[phase].at(batch_gpu)

    def phase_peak(self, phase: str, batch_gpu: int) -> int:
        return self.resident + self.grads[phase] + self.activations(phase, batch_gpu)

    def peak(self, batch_gpu: int) -> int:
        return max(self.phase_peak(p, batch_gpu) for p in self.grads)

    def max_batch_gpu(self, capacity_bytes: int) -> int:
        """The largest micro-batch whose predicted peak fits ``capacity_bytes`` (0 if none)."""
        b = 0
        while self.peak(b + 1) <= capacity_bytes and b < 1 << 16:
            b += 1
        return b

    def table(self, batch_gpus=(1, 2, 4, 8, 16, 32)) -> str:
        lines = ["resident (GiB): " + ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.static.items() if v)
                 + f"; total {self.resident / GIB:.2f}"]
        lines.append("gradients (GiB): " + ", ".join(f"{k} step {v / GIB:.2f}" for k, v in self.grads.items()))
        for k in self.grads:
            lines.append(f"activations of the {k} step (GiB): {self.act[k].describe()}")
        lines.append("")
        lines.append(f"{'batch_gpu':>9} | {'fake step':>10} | {'G step':>10} | {'peak':>10}")
        lines.append(f"{'-' * 9}-+-{'-' * 10}-+-{'-' * 10}-+-{'-' * 10}")
        for b in batch_gpus:
            fake, gen = self.phase_peak("fake", b), self.phase_peak("G", b)
            lines.append(f"{b:>9} | {fake / GIB:>6.2f} GiB | {gen / GIB:>6.2f} GiB | {max(fake, gen) / GIB:>6.2f} GiB")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- activations
@contextlib.contextmanager
def _no_value_checks():
    """The ops' data checks (sigma > 0) cannot read meta tensors: off for a measurement, then on again (the
    library's default)."""
    sk.set_value_checks(False)
    try:
        yield
    finally:
        sk.set_value_checks(True)


def _probe_checkpointing(net: LatentDenoiser, counter: SavedTensorCounter) -> None:
    if net.unet.is_gradient_checkpointing:
        net.unet.enable_gradient_checkpointing(counter.checkpoint_probe)


def measure_activations(G: LatentDenoiser, fake: LatentDenoiser, teacher: LatentDenoiser, cfg: LatentConfig,
                        batch: int, text_length: int, *, device_type: str, autocast_dtype: torch.dtype | None,
                        native: bool = False) -> dict[str, PhaseActivations]:
    """Activation bytes of one micro-batch of ``batch`` for each phase (``"fake"``, ``"G"``), running the
    trainer's objectives on copies of the networks where they are.

    ``native=False`` emulates ``device_type``'s autocast and attention (:class:`DevicePolicy`; any device, the
    meta device included); ``native=True`` runs real ``torch.autocast`` on the networks' own device (the
    measurement the emulation is checked against on the CPU; autocast's cast cache is not visible there, so
    ``cast_cache`` is 0).
    """
    nets = [copy.deepcopy(n) for n in (G, fake, teacher)]
    G, fake, teacher = nets
    static = [t for n in nets for t in list(n.parameters()) + list(n.buffers())]
    device = next(G.parameters()).device
    dim = int(G.unet.config.cross_attention_dim)
    shape = (batch, *G.latent_shape)

    def draw():
        return Draw(z=torch.randn(shape, device=device), cond=torch.randn(batch, text_length, dim, device=device),
                    t=torch.randint(cfg.tmin, cfg.tmax, (batch,), device=device))
    uncond = torch.randn(text_length, dim, device=device)
    net_dtype = autocast_dtype or torch.float32
    out = {}
    for phase in ("fake", "G"):
        counter = SavedTensorCounter(static)
        for n in nets:
            _probe_checkpointing(n, counter)
        trained = fake if phase == "fake" else G
        trained.requires_grad_(True)
        if native:
            policy = torch.autocast(device_type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        else:
            policy = DevicePolicy(device_type, autocast_dtype)
        with _no_value_checks(), policy as mode, counter:
            if phase == "fake":
                loss = fake_score_loss_on_generator(G, fake, draw(), uncond, init_timestep=cfg.init_timestep,
                                                    kappa=cfg.cfg_train_fake, scale=1.0, net_dtype=net_dtype)
            else:
                loss = generator_loss(G, teacher, fake, draw(), uncond, init_timestep=cfg.init_timestep,
                                      alpha=cfg.alpha, kappa_fake=cfg.cfg_eval_fake, kappa_real=cfg.cfg_eval_real,
                                      scale=1.0, net_dtype=net_dtype)
        trained.requires_grad_(False)
        del loss
        cache = counter.unsaved(mode.cached_casts()) if isinstance(mode, DevicePolicy) else 0
        out[phase] = PhaseActivations(saved=counter.total, recompute=counter.region_peak, cast_cache=cache)
    return out


# ---------------------------------------------------------------------------------------------- the model
def build_memory_model(G: LatentDenoiser, fake: LatentDenoiser, teacher: LatentDenoiser, cfg: LatentConfig, *,
                       text_length: int, device_type: str, autocast_dtype: torch.dtype | None,
                       text_bytes: int = 0, vae_bytes: int = 0) -> MemoryModel:
    """The memory model of networks as the trainer builds them (trainable G and fake, frozen teacher in its
    storage dtype), with the text conditioning's and the VAE's resident bytes given."""
    static = {"teacher": param_bytes(teacher), "G": param_bytes(G), "fake score": param_bytes(fake),
              "Adam (G)": adam_state_bytes(G), "Adam (fake)": adam_state_bytes(fake),
              "EMA": param_bytes(G) if cfg.ema == "gpu" else 0, "text": text_bytes, "VAE": vae_bytes}
    grads = {"fake": param_bytes(fake), "G": param_bytes(G)}
    one = measure_activations(G, fake, teacher, cfg, 1, text_length, device_type=device_type,
                              autocast_dtype=autocast_dtype)
    two = measure_activations(G, fake, teacher, cfg, 2, text_length, device_type=device_type,
                              autocast_dtype=autocast_dtype)
    act = {k: ActivationFit.from_measurements(one[k], two[k]) for k in one}
    return MemoryModel(static=static, grads=grads, act=act)


def meta_networks(unet_config: dict, scheduler_config: dict, frozen_dtype: torch.dtype, checkpointing: str):
    """G, fake score (fp32) and teacher (``frozen_dtype``) around a UNet built on the meta device."""
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    G = LatentDenoiser(unet, scheduler_config).requires_grad_(False)
    fake = copy.deepcopy(G)
    teacher = copy.deepcopy(G).to(frozen_dtype)
    for net in ((G, fake) if checkpointing == "trained" else (G, fake, teacher) if checkpointing == "all" else ()):
        net.unet.enable_gradient_checkpointing()
    return G, fake, teacher


def meta_component_bytes(text_config: dict | None, vae_config: dict | None, text_dtype: torch.dtype) -> tuple[int, int]:
    """Parameter bytes of the text encoder (``text_dtype``) and the fp32 VAE, built on the meta device."""
    text = vae = 0
    with torch.device("meta"):
        if text_config is not None:
            from transformers import CLIPTextConfig, CLIPTextModel
            text = param_bytes(CLIPTextModel(CLIPTextConfig(**text_config)).to(text_dtype))
        if vae_config is not None:
            from diffusers import AutoencoderKL
            vae = param_bytes(AutoencoderKL.from_config(vae_config))
    return text, vae


def predicted_model(cfg: LatentConfig, unet_config: dict, scheduler_config: dict, *, text_length: int,
                    text_config: dict | None, vae_config: dict | None, embeddings_bytes: int | None = None,
                    device_type: str = "cuda") -> MemoryModel:
    """The memory model of ``cfg`` on a ``device_type`` device from configs alone (meta device, no weights):
    bf16 autocast and a bf16 frozen teacher and text encoder unless ``cfg.precision`` is fp32."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device_type == "cuda")
    frozen = torch.bfloat16 if bf16 else torch.float32
    G, fake, teacher = meta_networks(unet_config, scheduler_config, frozen, cfg.grad_checkpointing)
    text_bytes, vae_bytes = meta_component_bytes(text_config if embeddings_bytes is None else None, vae_config, frozen)
    if embeddings_bytes is not None:
        text_bytes = embeddings_bytes
    model = build_memory_model(G, fake, teacher, cfg, text_length=text_length, device_type=device_type,
                               autocast_dtype=torch.bfloat16 if bf16 else None, text_bytes=text_bytes,
                               vae_bytes=vae_bytes)
    model.notes.update(precision="bf16 autocast, frozen teacher in bf16" if bf16 else "fp32",
                       checkpointing=cfg.grad_checkpointing, ema=cfg.ema)
    return model

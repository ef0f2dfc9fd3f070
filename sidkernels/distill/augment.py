"""Non-leaking geometric augmentation of the fake-score step (docs/sid.md §2.4): EDM's ADA-style pipe with
SiD's settings, written from its description.

With probability ``p`` each, per sample and independently (x-flip is always a fair coin):

    xflip      w ~ {0, 1}                      mirror left-right                      label w
    yflip      w ~ {0, 1}                      mirror top-bottom                      label w
    scale      w ~ N(0, 1), s = 2^(0.2 w)      isotropic zoom by s                    label w
    rotate     t ~ U(-pi, pi)                  rotation by t                          labels cos t - 1, sin t
    aniso      w ~ N(0, 1), r ~ U(-pi, pi)     zoom 2^(0.2 w) along direction r,      labels w cos r, w sin r
                                               2^(-0.2 w) across it
    translate  u, v ~ N(0, 1)                  shift by (0.125 W u, 0.125 H v)        labels u, v

An augmentation that is not applied contributes label 0 (and the identity).  The 9 labels, in this order,
condition the fake-score network through its ``map_augment`` layer (augment_dim 9); the teacher and the
generator always see zeros.  The geometric part is one inverse affine map per sample, in pixel units about
the image centre (x right, y down), as in EDM: output pixel q samples the input at

    S^-1 R(t) R(-r) A^-1 R(r) (q - shift),   S = s I,  A = diag(2^(0.2 w), 2^(-0.2 w)),  R(t) = [[cos, -sin], [sin, cos]].

[deviation] Resampling is one bicubic ``grid_sample`` with reflection at the borders; EDM resamples at 2x
through sym6 wavelet filters.  The transforms and labels are the same; the interpolation is slightly softer.
"""
from __future__ import annotations

import math

import torch

AUGMENT_DIM = 9
SCALE_STD = 0.2
ANISO_STD = 0.2
TRANSLATE_STD = 0.125


def augment_dim(net: torch.nn.Module) -> int:
    """The augment_dim of an EDM network (0 when it takes no augmentation labels)."""
    layer = getattr(getattr(net, "model", net), "map_augment", None)
    return 0 if layer is None else int(layer.weight.shape[1])


def draw_augment_params(n: int, p: float, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Per-sample parameters of the pipe at probability ``p`` (from the global torch RNG of ``device``)."""
    def gate(values: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.rand(values.shape[-1], device=device) < p, values, torch.zeros_like(values))

    def coin() -> torch.Tensor:
        return torch.randint(2, (n,), device=device).float()

    def uniform_angle() -> torch.Tensor:
        return (torch.rand(n, device=device) * 2 - 1) * math.pi

    xflip = coin()  # probability 1e8 p: always the coin
    yflip = gate(coin())
    scale = gate(torch.randn(n, device=device))
    rotate = gate(uniform_angle())
    aniso, aniso_dir = gate(torch.randn(n, device=device)), uniform_angle()
    translate = gate(torch.randn(2, n, device=device))
    return dict(xflip=xflip, yflip=yflip, scale=scale, rotate=rotate, aniso=aniso, aniso_dir=aniso_dir,
                translate=translate)


def augment_labels(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The [N, 9] fp32 labels of a draw."""
    t, w, r = params["rotate"], params["aniso"], params["aniso_dir"]
    columns = [params["xflip"], params["yflip"], params["scale"], t.cos() - 1, t.sin(), w * r.cos(), w * r.sin(),
               params["translate"][0], params["translate"][1]]
    return torch.stack(columns, dim=1).float()


def _rotation(t: torch.Tensor) -> torch.Tensor:
    c, s = t.cos(), t.sin()
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _diag(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(a)
    return torch.stack([torch.stack([a, zero], -1), torch.stack([zero, b], -1)], -2)


def apply_augment(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flip, then warp ``images`` [N, C, H, W] by the draw ``params``; same shape, dtype, device and layout.
    Samples with no geometric transform are only flipped (exactly)."""
    n, _, h, w = images.shape
    x = torch.where(params["xflip"].view(n, 1, 1, 1) > 0, images.flip(3), images)
    x = torch.where(params["yflip"].view(n, 1, 1, 1) > 0, x.flip(2), x)
    s = torch.exp2(params["scale"].float() * SCALE_STD)
    a = torch.exp2(params["aniso"].float() * ANISO_STD)
    r = params["aniso_dir"].float()
    # linear part of the inverse map (output -> input, pixel units about the centre)
    m = _diag(1 / s, 1 / s) @ _rotation(params["rotate"].float())
    m = m @ _rotation(-r) @ _diag(1 / a, a) @ _rotation(r)
    u, v = params["translate"].float()
    offset = -(m @ torch.stack([u * (w * TRANSLATE_STD), v * (h * TRANSLATE_STD)], -1).unsqueeze(-1))
    # to grid_sample's normalised coordinates (align_corners=False: x_norm = 2 x_centred / W): with
    # D = diag(2/W, 2/H), theta = [D m D^-1 | D offset]; Python scalars only (no host-to-device copy)
    theta = torch.cat([m[:, :, :1] * (w / 2), m[:, :, 1:] * (h / 2), offset], dim=2)
    theta = torch.cat([theta[:, :1] * (2 / w), theta[:, 1:] * (2 / h)], dim=1)
    grid = torch.nn.functional.affine_grid(theta, [n, 1, h, w], align_corners=False)
    warped = torch.nn.functional.grid_sample(x.float(), grid, mode="bicubic", padding_mode="reflection",
                                             align_corners=False)
    moved = ((params["scale"] != 0) | (params["rotate"] != 0) | (params["aniso"] != 0)
             | (params["translate"] != 0).any(0))
    out = torch.where(moved.view(n, 1, 1, 1), warped.to(images.dtype), x)  # untouched samples stay exact
    layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else None
    return out.contiguous(memory_format=layout or torch.contiguous_format)


def augment(images: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(augmented images, labels [N, 9])`` at probability ``p`` (docs/sid.md §2.4: 0.12 CIFAR-10, 0.15 FFHQ/AFHQ)."""
    params = draw_augment_params(images.shape[0], p, images.device)
    return apply_augment(images, params), augment_labels(params)

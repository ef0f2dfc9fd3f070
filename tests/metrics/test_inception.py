"""Our FID Inception-v3 against pytorch-fid's (which loads ``pt_inception-2015-12-05-6726825d.pth`` strictly).

``test_matches_pytorch_fid`` needs pytorch-fid and torchvision, which the CI environment does not have (no
torchvision wheel fits the CPU torch 2.13 there); it runs where they import.  It hands pytorch-fid seeded random
weights with our parameter names in place of the download, so its strict ``load_state_dict`` checks every
name and shape, and compares features and logits.  Its CI twin ``test_matches_recorded_pytorch_fid_outputs``
compares our module with the names/shapes digest and the outputs that the reference test printed, recorded with
pytorch-fid 0.3.0, torchvision 0.29.1 and torch 2.14.1 on a CPU.  The real weights file cannot be fetched here:
that it loads is inferred (pytorch-fid loads it strictly into the model whose names and shapes ours equal).
"""
import hashlib

import pytest
import torch
import torch.nn.functional as F

from sidkernels.metrics.detector import load_detector
from sidkernels.metrics.inception import FEATURE_DIM, NUM_CLASSES, FIDInceptionV3

# recorded from pytorch-fid 0.3.0 + torchvision 0.29.1 (torch 2.14.1, CPU) by test_matches_pytorch_fid
PYTORCH_FID_MANIFEST_SHA256 = "8cdd2faeb41211e17f0fb47e66168d0cb1f981aa773b5f44e5b9cc93857fe492"
PYTORCH_FID_FEATURES = [[0.7233161330223083, 0.0, 0.02482846938073635, 0.09144217520952225],  # features[:, :4]
                        [0.7418279051780701, 0.0, 0.025899967178702354, 0.07993222773075104]]
PYTORCH_FID_FEATURE_SUMS = [341.8359375, 342.58154296875]
PYTORCH_FID_LOGITS = [[-0.6288844347000122, 0.39615368843078613, -0.055259983986616135, -0.05931289866566658],
                      [-0.644950807094574, 0.41255274415016174, -0.04480433091521263, -0.04818489030003548]]


def seeded_state(seed: int = 0) -> dict:
    """Random weights with the FID Inception's names: He-scaled convolutions, batch norms near identity, in a
    fixed (sorted) order so every torch version draws the same values."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in sorted(FIDInceptionV3().state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(t)
        elif name.endswith("conv.weight"):
            state[name] = torch.randn(t.shape, generator=gen) * (2 / t[0].numel()) ** 0.5
        elif name.endswith("running_var"):
            state[name] = 1 + 0.1 * torch.rand(t.shape, generator=gen)
        elif name.endswith("bn.weight"):
            state[name] = 1 + 0.1 * torch.randn(t.shape, generator=gen)
        else:  # bn.bias, running_mean, fc.weight, fc.bias
            state[name] = 0.05 * torch.randn(t.shape, generator=gen)
    return state


def seeded_images(n: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def manifest_sha256(state: dict) -> str:
    return hashlib.sha256("\n".join(f"{k} {list(v.shape)}" for k, v in sorted(state.items())).encode()).hexdigest()


def ours(state: dict) -> FIDInceptionV3:
    return FIDInceptionV3.from_state_dict(state)


def test_matches_pytorch_fid(monkeypatch):
    pytest.importorskip("torchvision", reason="needs torchvision (not installable beside CI's CPU torch 2.13)")
    reference = pytest.importorskip("pytorch_fid.inception", reason="needs pytorch-fid")
    state = seeded_state()
    monkeypatch.setattr(reference, "load_state_dict_from_url", lambda *a, **k: state)  # no download: our weights
    classifier = reference.fid_inception_v3().eval()  # strict load_state_dict: every name and shape must match
    extractor = reference.InceptionV3([3]).eval()     # pytorch-fid's FID feature extractor (pool3, 2048-d)
    images = seeded_images()
    with torch.no_grad():
        want_features = extractor(images.float() / 255)[0].flatten(1)  # pytorch-fid takes [0, 1] images
        resized = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
        want_logits = classifier(2 * resized - 1)
        net = ours(state)
        features, logits = net(images, return_features=True), net(images)
    assert manifest_sha256(classifier.state_dict()) == manifest_sha256(net.state_dict())
    torch.testing.assert_close(features, want_features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-5)
    print("manifest", manifest_sha256(classifier.state_dict()))
    print("features", want_features[:, :4].tolist(), "sums", want_features.sum(1).tolist())
    print("logits", want_logits[:, :4].tolist())


def test_matches_recorded_pytorch_fid_outputs():
    state = seeded_state()
    net = ours(state)
    assert manifest_sha256(net.state_dict()) == PYTORCH_FID_MANIFEST_SHA256
    with torch.no_grad():
        features, logits = net(seeded_images(), return_features=True), net(seeded_images())
    assert features.shape == (2, FEATURE_DIM) and logits.shape == (2, NUM_CLASSES)
    torch.testing.assert_close(features[:, :4], torch.tensor(PYTORCH_FID_FEATURES), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features.sum(1), torch.tensor(PYTORCH_FID_FEATURE_SUMS), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[:, :4], torch.tensor(PYTORCH_FID_LOGITS), rtol=1e-4, atol=1e-5)


def test_state_dict_file_loads_as_a_detector(tmp_path):
    state = seeded_state()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # older files lack them
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    det = load_detector(path)
    assert det.kind == "pytorch-fid" and det.feature_dim == FEATURE_DIM
    feats = det.features(seeded_images())
    with torch.no_grad():
        direct = ours(seeded_state())(seeded_images(), return_features=True)
    torch.testing.assert_close(feats, direct.double())
    state["fc.weight"] = state["fc.weight"][:10]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"not pytorch-fid's Inception \(wrong shape \['fc.weight'\]\)"):
        load_detector(path)

"""Fixtures of the latent-teacher tests: tiny random diffusers models (no download).  Every test module here
needs diffusers and transformers (the optional ``latent`` extra) and skips without them."""
import pytest

pytest.importorskip("diffusers", reason="latent teachers need the optional extra: pip install 'sidkernels[latent]'")
pytest.importorskip("transformers", reason="latent teachers need the optional extra: pip install 'sidkernels[latent]'")


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat on a sofa\n\na red car, 4k\nmountains at dawn\nan old man reading\n")
    return str(path)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A diffusers pipeline folder of tiny random models (unet/, scheduler/, text_encoder/, tokenizer/, vae/)."""
    from sidkernels.latent.tiny import write_tiny_pipeline
    return write_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))

"""Each torchrun rank picks its own device: the environment of rank 1 of 2 gives cuda:1."""
import pytest
import torch

from sidkernels.distill.dist import rank_device, world_size

RANK1_OF_2 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_rank_1_of_2_takes_its_own_gpu(name):
    assert rank_device(name, RANK1_OF_2, cuda_available=True) == torch.device("cuda", 1)


def test_an_explicit_index_and_the_cpu_are_kept():
    assert rank_device("cuda:0", RANK1_OF_2, cuda_available=True) == torch.device("cuda", 0)
    assert rank_device("auto", RANK1_OF_2, cuda_available=False) == torch.device("cpu")
    assert rank_device("cpu", RANK1_OF_2, cuda_available=True) == torch.device("cpu")


def test_one_process_uses_the_current_gpu():
    assert rank_device("auto", {}, cuda_available=True) == torch.device("cuda")
    assert world_size({}) == 1 and world_size(RANK1_OF_2) == 2

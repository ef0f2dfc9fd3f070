"""Each torchrun rank picks its own device (the environment of rank 1 of 2 gives cuda:1), and the global batch
splits into whole micro-batches per rank or is refused."""
import pytest
import torch

from sidkernels.distill.config import split_batch
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


@pytest.mark.parametrize("batch, batch_gpu, world, expected", [
    (64, None, 1, (64, 64, 1)), (256, 16, 4, (64, 16, 4)), (8, 1, 8, (1, 1, 1)), (12, 3, 2, (6, 3, 2))])
def test_the_batch_splits_into_ranks_and_rounds(batch, batch_gpu, world, expected):
    per_rank, micro, rounds = split_batch(batch, batch_gpu, world)
    assert (per_rank, micro, rounds) == expected and per_rank * world == batch and micro * rounds == per_rank


@pytest.mark.parametrize("batch, batch_gpu, world, message", [
    (10, None, 4, r"batch \(10\) must be a positive multiple of the world size \(4\)"),
    (0, None, 1, r"batch \(0\) must be a positive multiple"),
    (12, 5, 2, r"batch per rank \(6\) must be divisible by batch_gpu \(5\)")])
def test_a_split_that_is_not_whole_is_refused(batch, batch_gpu, world, message):
    with pytest.raises(ValueError, match=message):
        split_batch(batch, batch_gpu, world)

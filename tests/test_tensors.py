"""ufl.tensors: the one tensor -> numpy conversion and the one bilinear resize (issue 15)."""

import numpy as np
import pytest
import torch

from ufl.tensors import resize, to_numpy


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_come_back_as_float32_with_their_values(dtype):
    x = torch.tensor([[0.5, -2.0], [1024.0, 3.0]], dtype=dtype, requires_grad=True)
    arr = to_numpy(x)
    assert arr.dtype == np.float32
    assert arr.tolist() == [[0.5, -2.0], [1024.0, 3.0]]


def test_other_dtypes_and_arrays_are_kept():
    assert to_numpy(torch.tensor([1.5], dtype=torch.float64)).dtype == np.float64
    assert to_numpy(torch.tensor([3, 255], dtype=torch.uint8)).tolist() == [3, 255]
    assert to_numpy(torch.arange(3)).dtype == np.int64
    arr = np.arange(4.0)
    assert to_numpy(arr) is arr
    assert to_numpy([1, 2]).tolist() == [1, 2]
    cpu = torch.ones(3)
    assert np.shares_memory(to_numpy(cpu), cpu.numpy())  # a CPU float32 tensor is not copied


def test_resize_is_bilinear_without_aligned_corners_and_a_no_op_at_the_same_size():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]]).reshape(1, 1, 2, 2)
    assert resize(x, (2, 2)) is x
    assert resize(x, torch.Size([2, 2])) is x
    # half the size: the one output pixel samples the centre, the mean of the four
    assert resize(x, (1, 1)).item() == pytest.approx(3.0)
    # twice the size: the corner pixel (centre 0.25, 0.25 in input pixels) clamps to the input's corner
    up = resize(x, [4, 4])
    assert up.shape == (1, 1, 4, 4) and up[0, 0, 0, 0].item() == pytest.approx(1.0)
    assert up[0, 0, 0, 1].item() == pytest.approx(1.25)  # 3/4 of 1 and 1/4 of 2

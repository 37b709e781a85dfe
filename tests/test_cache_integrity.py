"""The workspace side of cache integrity (issue 13, item 10): precision and size mismatches on a rerun
of cache-features, and features beyond float16's range computed online as the cache stores them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import feature_cache as fc
from ufl.synthetic import make_synthetic
from ufl.errors import CacheError
from ufl.models import Backbone
from ufl.workspace import Workspace
from ufl.workspace.views import backbone_features

SIZE = (64, 64)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    make_synthetic(root / "data", size=64, n_train=2, n_val=3, seed=0, progress=False, workers=1)
    torch.manual_seed(0)
    ws = Workspace.create(root / "ws", Backbone("hrnet_w18_small_v2", warn_random_init=False), "random init")
    ws.cache_features("pascal", ["val"], data_root=root / "data", size=SIZE, device="cpu", batch_size=3,
                      workers=0, progress=False)
    return ws


@pytest.mark.slow
def test_a_rerun_with_another_precision_is_reported_not_already_cached(cached):
    path = cached.cache_file("pascal", "val", 1)
    before = path.read_bytes()
    with pytest.raises(CacheError, match=r"pascal.*val.* holds float16 features \(requested float32\); pass "
                                         r"--overwrite to rebuild it"):
        cached.cache_features("pascal", ["val"], size=SIZE, device="cpu", storage="float32", workers=0,
                              progress=False)
    assert path.read_bytes() == before
    again = cached.cache_features("pascal", ["val"], size=SIZE, device="cpu", workers=0, progress=False)[0]
    assert again.skipped  # the same settings: already cached, as before
    assert fc.verify_file(path) == []  # what the workspace wrote carries checksums, all sound


def test_features_beyond_float16_are_kept_online_as_in_the_cache(tmp_path):
    class Loud(torch.nn.Module):  # a backbone whose features exceed float16's range (random init, 256 px)
        def forward(self, images):
            return [images * 1e6, images]

    images = torch.rand(2, 3, 8, 8)
    big, small = backbone_features(Loud(), images)
    assert big.dtype == torch.float32 and torch.isfinite(big).all() and small.dtype == torch.float16
    torch.testing.assert_close(big, images * 1e6, rtol=2**-11, atol=0)
    w = fc.FeatureCacheWriter.create(tmp_path / "c.h5", 2, [(3, 8, 8), (3, 8, 8)], fingerprint="fp",
                                     input_size=(8, 8))
    w.write([0, 1], [big, small])
    w.finalize()
    with fc.FeatureCacheReader(tmp_path / "c.h5") as reader:
        stored = reader.features_batch([0, 1])
    assert np.array_equal(stored[0], big.numpy()) and np.array_equal(stored[1], small.numpy())

"""bench/composite_mask.py: the copy mask statistics of a composite model."""

from __future__ import annotations

import pytest
import torch

from worldmodel.model.svg import WorldModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mask_stats(model_config, bench_script):
    cm = bench_script("composite_mask")
    torch.manual_seed(0)
    model = WorldModel(model_config("tiny", composite=True), 64, 0).eval()
    g = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=g).repeat(5, 1, 1, 1)
    clip[3:, :, :32] = 0  # t+1 (index 2) is still; the top half changes later
    r = cm.mask_stats(model, clip, n_past=2, horizon=3)
    assert r["still_fraction"] == 1.0
    assert 0.8 < r["mask_t1"] < 0.95  # about sigmoid(MASK_BIAS) = 0.88 untrained
    assert r["mask_still_t1"] == pytest.approx(r["mask_t1"])
    with torch.no_grad():  # a saturated mask: copies everywhere
        model.decoder.levels[0].main.bias[3] = 100.0
    assert cm.mask_stats(model, clip, 2, 3)["mask_last"] == pytest.approx(1.0)
    assert "_composite" not in vars(model.decoder)  # the recording hook is removed
    with pytest.raises(ValueError, match="no copy mask"):
        cm.mask_stats(WorldModel(model_config("tiny"), 64, 0), clip, 2, 3)

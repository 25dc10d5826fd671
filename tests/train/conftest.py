"""Train tests run single-threaded: models of ~100k params gain nothing from intra-op threads and
a loaded 2-core machine makes spinning thread pools 100x slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

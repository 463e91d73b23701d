import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for modules of small models: they gain nothing from two, and on a
    shared, busy 2-core machine two threads run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

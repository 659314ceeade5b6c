import pytest
import torch


def pytest_configure(config):
    # Tiny models lose more to thread start-up and contention than they gain from a second
    # thread; the suite runs one process per core instead (pytest -n 2).
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield

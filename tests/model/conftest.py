import pytest
import torch

from model.config import ModelConfig
from model.network import build_model

TINY_CNN = ModelConfig(arch="cnn", n_classes=10, width=8, max_iter=30)
TINY_LSTM = ModelConfig(
    arch="lstm", n_classes=2, vocab_size=50, embed_dim=8, hidden_size=8, max_iter=30
)


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return build_model(TINY_CNN).double().eval()


@pytest.fixture
def tiny_lstm():
    torch.manual_seed(0)
    return build_model(TINY_LSTM).double().eval()


def cnn_batch(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).double()


def lstm_batch(n: int = 8, t: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(3, t + 1, (n,), generator=gen)
    tokens = torch.randint(1, 50, (n, t), generator=gen)
    tokens[torch.arange(t)[None, :] >= lengths[:, None]] = 0  # padding at the end
    return tokens, lengths

"""The torch modules of :class:`~sklearn_certify.nets.MultiLabelNet`: an MLP for flat
inputs and a small CNN for images (public through :mod:`sklearn_certify.nets`)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPModule", "SmallCNN"]


def _as_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral):
        return (int(value),)
    if isinstance(value, Sequence):
        return tuple(int(v) for v in value)
    raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}.")


class MLPModule(nn.Module):
    """Fully connected network with ReLU activations, returning one logit per label.

    Inputs with more than two dimensions (e.g. images ``(N, C, H, W)``) are flattened.

    Parameters
    ----------
    n_features : int
        Number of input features (``C * H * W`` for images).
    n_classes : int
        Number of labels (outputs).
    hidden : int or tuple of int, default=(256,)
        Widths of the hidden layers; ``()`` gives a linear model.
    dropout : float, default=0.0
        Dropout probability after each hidden layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.nets import MLPModule
    >>> MLPModule(64, 10)(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int | Sequence[int] = (256,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(n_features)
        for size in self.hidden_widths(hidden):
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, int(n_classes)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))

    @staticmethod
    def hidden_widths(hidden: int | Sequence[int]) -> tuple[int, ...]:
        """The hidden layers' widths as a tuple (``hidden`` as the constructor takes it)."""
        return _as_tuple(hidden, "hidden")

    def linear_layers(self) -> list[nn.Linear]:
        """The fully connected layers, from the input to the output."""
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)]

    def load_linear_weights(self, weights) -> None:
        """Copy ``[(W (out, in), b (out,)), ...]`` into :meth:`linear_layers`, in order."""
        layers = self.linear_layers()
        if len(weights) != len(layers):
            raise ValueError(f"{len(weights)} (W, b) pairs for {len(layers)} layers.")
        with torch.no_grad():
            for layer, (W, b) in zip(layers, weights):
                layer.weight.copy_(torch.as_tensor(W))
                layer.bias.copy_(torch.as_tensor(b))


class SmallCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a one-hidden-layer head, one logit per label.

    Parameters
    ----------
    in_channels : int
        Number of input channels ``C`` of images ``(N, C, H, W)``.
    n_classes : int
        Number of labels (outputs).
    image_size : int or (int, int)
        Height and width ``(H, W)`` of the images; both at least 4 (each pooling halves
        them).
    channels : (int, int), default=(16, 32)
        Output channels of the two 3x3 convolutions.
    hidden : int, default=128
        Width of the fully connected hidden layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.nets import SmallCNN
    >>> SmallCNN(1, 10, (16, 16))(torch.zeros(5, 1, 16, 16)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        image_size: int | tuple[int, int],
        channels: tuple[int, int] = (16, 32),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        size = _as_tuple(image_size, "image_size")
        height, width = (size[0], size[0]) if len(size) == 1 else size
        if min(height, width) < 4:
            raise ValueError(f"SmallCNN needs images of at least 4x4, got {height}x{width}.")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(int(in_channels), c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n_flat = c2 * (height // 4) * (width // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, int(n_classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

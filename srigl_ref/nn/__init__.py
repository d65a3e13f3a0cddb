"""A small trainer's parts without autograd: layers with manual backward, models, loss, SGD."""
from .layers import Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU
from .losses import softmax_cross_entropy
from .models import MODELS, Model, build_model, cnn, lenet5, mlp, sparse_init
from .optim import SGD, CosineLR, StepLR

__all__ = [
    "Conv2d", "CosineLR", "Flatten", "GlobalAvgPool", "Linear", "MODELS", "MaxPool2d", "Model",
    "ReLU", "SGD", "StepLR", "build_model", "cnn", "lenet5", "mlp", "softmax_cross_entropy",
    "sparse_init",
]

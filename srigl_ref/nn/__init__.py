"""A small trainer's parts without autograd: layers with manual backward, models, loss, SGD."""
from .layers import (BasicBlock, BatchNorm1d, BatchNorm2d, BiasFreeConv2d, Conv2d, Flatten,
                     GlobalAvgPool, Linear, MaxPool2d, ReLU)
from .losses import softmax_cross_entropy
from .models import (DENSE_INITS, MODEL_DEFAULTS, MODELS, SPARSE_INITS, Model, build_model,
                     cnn, dense_init, lenet5, mlp, resnet18, resnet20, sparse_init)
from .optim import SGD, CosineLR, StepLR

__all__ = [
    "BasicBlock", "BatchNorm1d", "BatchNorm2d", "BiasFreeConv2d", "Conv2d", "CosineLR",
    "DENSE_INITS", "Flatten", "GlobalAvgPool", "Linear", "MODEL_DEFAULTS", "MODELS", "MaxPool2d",
    "Model", "ReLU", "SGD", "SPARSE_INITS", "StepLR", "build_model", "cnn", "dense_init", "lenet5", "mlp",
    "resnet18", "resnet20", "softmax_cross_entropy", "sparse_init",
]

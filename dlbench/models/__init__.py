"""Models, one module per family; importing this package registers them all."""

from dlbench.models import (  # noqa: F401  (register into MODELS)
    airbench,
    alexnet,
    cnn,
    densenet,
    gan,
    googlenet,
    mlp,
    resnet,
    rnn,
    seq2seq,
    vgg,
)

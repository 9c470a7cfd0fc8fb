"""Models, one module per family; importing this package registers them all."""

from dlbench.models import alexnet, cnn, densenet, googlenet, mlp, resnet, vgg  # noqa: F401  (register into MODELS)

"""convzoo: the convolutional architectures after ResNet, faithful, fast and comparable."""

from convzoo.registry import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "model_info"]

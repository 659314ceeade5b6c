"""Datasets, the GPU-resident loader for small datasets, and augmentation.

``datasets`` (CIFAR pickle layout, ImageFolder, embedded digits, splits), ``build`` (``--data`` to
checked splits), ``device_loader`` + ``augment`` (uint8 on the device, batched augmentation),
``transforms`` (torchvision v2 in DataLoader workers for large folders).
"""

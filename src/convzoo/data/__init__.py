"""Datasets, the GPU-resident loader for small datasets, and augmentation."""

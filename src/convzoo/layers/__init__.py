"""Blocks used by two or more families. Import from the submodules (``convzoo.layers.conv``...)."""

"""The lecture's experiments as tools: compound scaling of any family, class activation maps,
DenseNet's weight map, architecture pictures, ConvNeXt's roadmap training."""

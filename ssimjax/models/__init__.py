"""Models: the Flax networks and how they start.

``resnet`` (the torchvision-exact ResNet backbone), ``quality`` (the MLP predictor and the whole
``QualityModel``; which subtree is the backbone), ``mapnet`` (the SSIM-map network and its
inference), ``layers`` (BatchNorm with PyTorch's semantics, the stem's max-pool), ``init``
(seeded initialisation; statistics standardisation and the head's bias set from data).
"""

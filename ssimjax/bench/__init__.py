"""Measuring code: speed against the plan's PyTorch trainer, on CPUs and GPUs, and model comparisons.

Called by ``ssimjax benchmark`` and the ``scripts/benchmark*.py`` / ``scripts/compare_models.py``
wrappers; importable and tested like the library.
"""

"""Training: pure steps, the loops around them, checkpoints, and a whole run.

``state`` (``TrainState`` and the ``Trainer`` that binds model, optimiser and loss), ``steps``
(pure, jit-compiled train / eval steps and whole epochs), ``losses``, ``optim`` (Optax optimiser and
per-epoch schedules), ``fit`` (the epoch loop) with ``progress`` (history, early stopping, where a
fit stands), ``checkpoint`` (Orbax), ``parallel`` and ``batching`` (devices and batches),
``mapnet`` (training the SSIM-map network), ``plan`` (how a run starts) and ``run`` (the stages
of ``ssimjax train``).
"""

"""Evaluation: metrics, cross-validation, analyses, the report, and a run loaded back.

``metrics`` (SRCC, PLCC, KRCC, MAE, ...), ``cross_validation`` (k folds as one vmapped program),
``analysis`` (robustness to noise, inference speed, feature importance), ``figures`` and
``report`` (a run's plots and HTML dashboard), ``predict`` (a run folder loaded back; predictions
on image files).
"""

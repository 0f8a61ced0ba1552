"""Calibration of the cost models: everything that fits, measures or reports on them.

The runtime models (:mod:`schedgym.costmodels.inference`, :mod:`~schedgym.costmodels.network`,
:mod:`~schedgym.costmodels.training`) read the shipped derived tables in ``costmodels/data/`` and
never import this package.

- :mod:`~schedgym.costmodels.calibration.profiles`: reading operator and attention profiles.
- :mod:`~schedgym.costmodels.calibration.fitting`: the roofline coefficient fit and its errors.
- :mod:`~schedgym.costmodels.calibration.validation`: whole-iteration checks (Sarathi-Serve),
  the engine-overhead fit, the cross-model check.
- :mod:`~schedgym.costmodels.calibration.whole_forward`: the per-GPU whole-forward compute scale.
- :mod:`~schedgym.costmodels.calibration.nccl_fit`: the NCCL latency-bandwidth laws.
- :mod:`~schedgym.costmodels.calibration.shared_prefix_fit`: the cascade attention kernel.
- :mod:`~schedgym.costmodels.calibration.training_fit`: the training model's efficiency curves.
- :mod:`~schedgym.costmodels.calibration.profiler`: measuring the local device with torch.
- :mod:`~schedgym.costmodels.calibration.cpu_timing`: timing code on the local CPU (the
  OnlineDataGen cost table).
- :mod:`~schedgym.costmodels.calibration.derive`: deriving ``data/`` from the reference data.
"""

"""Workloads shared by the LLM environments: arrival processes, length distributions, traces.

Modules: :mod:`~schedgym.workloads.arrivals` (Poisson and Gamma arrivals),
:mod:`~schedgym.workloads.request_lengths` (ShareGPT statistics, power law, fixed),
:mod:`~schedgym.workloads.traces` (CSV trace replay, the shipped Azure conversation trace),
:mod:`~schedgym.workloads.priorities` (priority classes) and
:mod:`~schedgym.workloads.requests` (a whole request stream from those parts).
"""

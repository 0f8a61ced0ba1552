"""The deep surrogate: an MLP from (5 parameters, t) to the flattened field, trained by Adam.

Plain numpy in float32, so that the environment needs no torch: at these sizes numpy is faster
than torch on one CPU thread, whose per-call overhead dominates (measured on the cost table's
machine, one thread: 1.0 ms numpy vs 1.7 ms torch per step at the default 6 -> 128 -> 128 -> 1024,
batch 64; 0.14 vs 0.53 ms at the ``small`` preset's size), so torch is not used at all.
Everything is deterministic given the generator that initialises the
weights (BLAS results can differ in the last bits between CPU kernels, so bit-for-bit replay is
guaranteed on one machine, the simulated clock everywhere).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

# Adam's constants (Kingma & Ba 2015 defaults).
BETA1 = 0.9
BETA2 = 0.999
EPSILON = 1e-8


def layer_widths(
    input_dim: int, output_dim: int, hidden_width: int, num_hidden_layers: int
) -> list[int]:
    """Units per layer, input and output included.

    Args:
        input_dim: inputs per sample (6: five parameters and t, each scaled to [-1, 1]).
        output_dim: outputs per sample (the flattened field).
        hidden_width: units per hidden layer.
        num_hidden_layers: hidden layers.
    """
    return [input_dim] + [hidden_width] * num_hidden_layers + [output_dim]


def initial_weights(widths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """He-uniform ``(fan_in, fan_out)`` float32 weights, layer by layer, drawn from ``rng``.

    The output layer's are scaled by 0.1, so the first predictions sit near the output's mean.
    """
    weights = []
    for fan_in, fan_out in itertools.pairwise(widths):
        bound = math.sqrt(6.0 / fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
    weights[-1] *= np.float32(0.1)
    return weights


class MLPSurrogate:
    """ReLU MLP with a linear output layer, trained on mean squared error by Adam.

    Args:
        weights: the initial ``(fan_in, fan_out)`` weights per layer (copied; biases start at
            zero). :meth:`initialised` draws them.
        learning_rate: Adam's step size.
        average_decay: decay per step of an exponential moving average of the parameters
            (Polyak averaging, bias-corrected as Adam's moments), which :meth:`predict` and
            :meth:`per_sample_mse` use with ``averaged=True``; 0 keeps no average (``averaged``
            then reads the trained parameters).
    """

    def __init__(
        self, weights: Sequence[np.ndarray], learning_rate: float, average_decay: float = 0.0
    ) -> None:
        # Copied: Adam updates the weights in place, and the given ones may be shared (an
        # episode instance's, read-only).
        self.weights: list[np.ndarray] = [  # (fan_in, fan_out) float32 each
            np.array(weight, np.float32, copy=True) for weight in weights
        ]
        self.biases: list[np.ndarray] = [  # (fan_out,) float32 each
            np.zeros(weight.shape[1], np.float32) for weight in self.weights
        ]
        self.learning_rate = learning_rate
        self._first = [np.zeros_like(p) for p in self._params()]
        self._second = [np.zeros_like(p) for p in self._params()]
        self.steps = 0
        self.average_decay = average_decay
        # The running averages, started at zero (the bias correction removes the start).
        self._average = [np.zeros_like(p) for p in self._params()] if average_decay > 0.0 else []

    @classmethod
    def initialised(
        cls,
        input_dim: int,
        output_dim: int,
        hidden_width: int,
        num_hidden_layers: int,
        learning_rate: float,
        rng: np.random.Generator,
        average_decay: float = 0.0,
    ) -> MLPSurrogate:
        """A fresh surrogate with weights drawn by :func:`initial_weights` from ``rng``."""
        widths = layer_widths(input_dim, output_dim, hidden_width, num_hidden_layers)
        return cls(initial_weights(widths, rng), learning_rate, average_decay)

    def _params(self) -> list[np.ndarray]:
        return [*self.weights, *self.biases]

    @property
    def num_params(self) -> int:
        """Trainable scalars."""
        return sum(p.size for p in self._params())

    def averaged_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The Polyak-averaged ``(weights, biases)``, bias-corrected; the trained ones when no
        average is kept or no step was taken yet."""
        if not self._average or self.steps == 0:
            return self.weights, self.biases
        correction = np.float32(1.0 / (1.0 - self.average_decay**self.steps))
        averaged = [average * correction for average in self._average]
        layers = len(self.weights)
        return averaged[:layers], averaged[layers:]

    def predict(self, inputs: np.ndarray, averaged: bool = False) -> np.ndarray:
        """``(N, input_dim)`` -> ``(N, output_dim)`` float32; with ``averaged``, by the
        Polyak-averaged parameters (see ``average_decay``)."""
        weights, biases = self.averaged_params() if averaged else (self.weights, self.biases)
        activation = np.asarray(inputs, np.float32)
        last = len(weights) - 1
        for layer, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            activation = activation @ weight + bias
            if layer < last:
                np.maximum(activation, 0.0, out=activation)
        return activation

    def per_sample_mse(
        self, inputs: np.ndarray, targets: np.ndarray, averaged: bool = False
    ) -> np.ndarray:
        """``(N,)`` mean squared error of each sample, without training (``averaged``: see
        :meth:`predict`)."""
        diff = self.predict(inputs, averaged) - targets
        return np.einsum("ij,ij->i", diff, diff) / diff.shape[1]

    def train_step(self, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """One Adam step on the batch's mean squared error; returns the ``(B,)`` per-sample losses
        before the update (the training loss Breed-like sampling reads)."""
        activations = [np.asarray(inputs, np.float32)]
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            out = activations[-1] @ weight + bias
            if layer < last:
                np.maximum(out, 0.0, out=out)
            activations.append(out)
        diff = activations[-1] - targets
        per_sample = np.einsum("ij,ij->i", diff, diff) / diff.shape[1]
        # d(mean over batch and outputs of diff^2) / d prediction
        grad = diff * np.float32(2.0 / diff.size)
        weight_grads: list[np.ndarray] = [np.empty(0, np.float32)] * len(self.weights)
        bias_grads: list[np.ndarray] = [np.empty(0, np.float32)] * len(self.weights)
        for layer in range(last, -1, -1):
            weight_grads[layer] = activations[layer].T @ grad
            bias_grads[layer] = grad.sum(axis=0)
            if layer > 0:
                grad = grad @ self.weights[layer].T
                grad *= activations[layer] > 0
        self._adam([*weight_grads, *bias_grads])
        return per_sample.astype(np.float64)

    def _adam(self, grads: list[np.ndarray]) -> None:
        self.steps += 1
        correction1 = 1.0 - BETA1**self.steps
        correction2 = 1.0 - BETA2**self.steps
        step_size = np.float32(self.learning_rate * math.sqrt(correction2) / correction1)
        for param, grad, first, second in zip(
            self._params(), grads, self._first, self._second, strict=True
        ):
            first *= np.float32(BETA1)
            first += np.float32(1.0 - BETA1) * grad
            second *= np.float32(BETA2)
            second += np.float32(1.0 - BETA2) * grad * grad
            param -= step_size * first / (np.sqrt(second) + np.float32(EPSILON))
        if self._average:
            keep = np.float32(self.average_decay)
            for param, average in zip(self._params(), self._average, strict=True):
                average *= keep
                average += np.float32(1.0 - self.average_decay) * param


def training_flops(batch_size: int, num_params: int) -> float:
    """Floating-point operations of one training step (forward 2, backward 4 per weight and
    sample), the size variable of the training-step cost model."""
    return 6.0 * batch_size * num_params


def mlp_num_params(
    input_dim: int, output_dim: int, hidden_width: int, num_hidden_layers: int
) -> int:
    """Trainable scalars of :class:`MLPSurrogate` with these sizes."""
    widths = layer_widths(input_dim, output_dim, hidden_width, num_hidden_layers)
    return sum(a * b + b for a, b in itertools.pairwise(widths))

"""The fitted roofline coefficients by device, as the runtime reads them.

:class:`Calibration` holds what :func:`schedgym.costmodels.calibration.fitting.fit_calibration`
produces; :func:`shipped_calibration` reads the shipped ``data/coefficients.json``. The runtime
cost model needs only this module, never the fitter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from schedgym.core.jsonio import dumps_strict
from schedgym.costmodels.roofline import RooflineCoefficients

COEFFICIENTS_FILE = "coefficients.json"


@dataclass
class Calibration:
    """Fitted coefficients: device name -> operator name -> coefficients.

    Operators are the token-level ones (``attn_pre_proj``, ..., ``emb``) plus ``attn_prefill``
    and ``attn_decode``. ``default`` holds the geometric mean over the fitted devices, used for a
    device in the catalogue that has no profile of its own.
    """

    devices: dict[str, dict[str, RooflineCoefficients]] = field(default_factory=dict)
    default: dict[str, RooflineCoefficients] = field(default_factory=dict)

    def for_device(self, name: str) -> dict[str, RooflineCoefficients]:
        """Coefficients of a device, filling gaps from the default."""
        merged = dict(self.default)
        merged.update(self.devices.get(name, {}))
        return merged

    def to_json(self) -> str:
        """Serialises to JSON (the shipped ``coefficients.json``)."""
        payload = {
            "units": "efficiencies: fractions of datasheet peak; floor_s, cta_latency_s: seconds",
            "devices": {
                device: {op: c.to_dict() for op, c in ops.items()}
                for device, ops in sorted(self.devices.items())
            },
            "default": {op: c.to_dict() for op, c in self.default.items()},
        }
        return dumps_strict(payload, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)

        def parse(ops: dict[str, Any]) -> dict[str, RooflineCoefficients]:
            return {op: RooflineCoefficients(**values) for op, values in ops.items()}

        return cls(
            devices={device: parse(ops) for device, ops in raw["devices"].items()},
            default=parse(raw["default"]),
        )


def shipped_calibration() -> Calibration:
    """The calibration fitted from the shipped profiles (``data/coefficients.json``)."""
    text = resources.files("schedgym.costmodels").joinpath(f"data/{COEFFICIENTS_FILE}").read_text()
    return Calibration.from_json(text)

"""`govsync demo [scenario]`: the sources' scenarios end to end on this node, each ending
with its change's trace. The deregistration is the default (`make demo`)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from govsync.demo import deregistration, house_transfer, newborn, registration
from streams.config.settings import Settings

SCENARIOS: dict[str, Callable[[Settings, Console], bool]] = {
    "deregistration": deregistration.run,
    "registration": registration.run,
    "newborn": newborn.run,
    "house-transfer": house_transfer.run,
}
DEFAULT = "deregistration"

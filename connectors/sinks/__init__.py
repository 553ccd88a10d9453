"""The reference sinks: which department applies which delivery topics, and how."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.sinks import (
    disease_control,
    education,
    medical_insurance,
    public_security,
    social_security,
    tax,
)
from connectors.subscriber import Handler

SINKS: dict[str, Mapping[str, Handler]] = {
    "tax": tax.HANDLERS,
    "social_security": social_security.HANDLERS,
    "medical_insurance": medical_insurance.HANDLERS,
    "public_security": public_security.HANDLERS,
    "disease_control": disease_control.HANDLERS,
    "education": education.HANDLERS,
}


def process_name(department: str) -> str:
    """Name of the sink's background process (pid file, log) in the state directory."""
    return f"{department.replace('_', '-')}-sink"

"""The reference sinks: which department applies which delivery topics, and how."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.sinks import medical_insurance as medical_insurance_sink
from connectors.sinks import social_security as social_security_sink
from connectors.sinks import tax as tax_sink
from connectors.subscriber import Handler

SINKS: dict[str, Mapping[str, Handler]] = {
    "tax": tax_sink.HANDLERS,
    "social_security": social_security_sink.HANDLERS,
    "medical_insurance": medical_insurance_sink.HANDLERS,
}


def process_name(department: str) -> str:
    """Name of the sink's background process (pid file, log) in the state directory."""
    return f"{department.replace('_', '-')}-sink"

"""Model zoo. Every model maps a waveform ``(batch, samples)`` to logits ``(batch, classes)``.

Model families register themselves when their module is imported; ``create_model`` and
``list_models`` import every family first (lazily, not at package import), so callers
never need to know which module holds which model.
"""

from audioclf.models.registry import (
    ModelInfo,
    ModelSummary,
    create_model,
    get_model_info,
    list_models,
    model_summary,
    register_model,
)

__all__ = ["ModelInfo", "ModelSummary", "create_model", "get_model_info", "list_models", "model_summary", "register_model"]

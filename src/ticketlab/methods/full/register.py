"""The dense pre-trained model, no mask: the baseline every sweep and report starts with (`full`)."""

from ..registry import Method, register_method

register_method(
    Method(
        "full",
        None,
        None,
        "the dense pre-trained model (no mask)",
        verb=None,
        seeded=False,
        color="C0",
        order=0,
    )
)

"""Wanda as a registered one-shot method, `ticketlab prune wanda --corpus ...` (light: `--help` reads
it without torch; the method is `methods.wanda.prune:wanda_mask`)."""

from ..registry import Method, register_method

register_method(
    Method(
        "wanda",
        None,
        "ticketlab.methods.wanda.prune:wanda_mask",
        "Wanda (Sun et al. 2024): keep the largest |W|·‖X‖ of each output row, X the inputs of "
        "--calibration sequences of --corpus (a mask over θ0)",
        verb="prune",
        calibrated=True,
        color="teal",  # outside matplotlib's cycle, as the structured tickets' colours
        order=8,  # after the papers' methods
    )
)

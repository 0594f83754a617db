"""SparseGPT as a registered one-shot method, `ticketlab prune sparsegpt --corpus ...` (light: `--help`
reads it without torch; the method is `methods.sparsegpt.prune:sparsegpt_mask`)."""

from ..registry import Method, register_method

register_method(
    Method(
        "sparsegpt",
        None,
        "ticketlab.methods.sparsegpt.prune:sparsegpt_mask",
        "SparseGPT (Frantar & Alistarh 2023): the layer-wise OBS mask from the inverse Hessian of "
        "--calibration sequences of --corpus; the mask over θ0 is a ticket, the reconstructed weights "
        "beside it a sparse model, not a ticket (export --reconstructed)",
        verb="prune",
        calibrated=True,
        beside_mask="its reconstructed weights, a sparse model and not a ticket",
        color="darkviolet",  # outside matplotlib's cycle (see `wanda`)
        order=9,  # after the papers' methods and Wanda
    )
)

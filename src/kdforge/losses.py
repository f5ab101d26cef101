"""Pure loss functions of every method, for use in your own training loop."""

from kdforge.methods.kd import kd_loss

__all__ = ["kd_loss"]

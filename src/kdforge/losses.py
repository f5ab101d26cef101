"""Pure loss functions of every method, for use in your own training loop."""

from kdforge.methods.at import at_loss
from kdforge.methods.ckd import ckd_loss
from kdforge.methods.crd import nce_loss
from kdforge.methods.dist import dist_loss
from kdforge.methods.dkd import dkd_loss
from kdforge.methods.ickd import aggregate_logits, nicd_loss, picd_loss
from kdforge.methods.kd import kd_loss
from kdforge.methods.kr import sparse_recode
from kdforge.methods.logit_std import standardize_logits
from kdforge.methods.refilled import refilled_stage1_loss, refilled_stage2_loss
from kdforge.methods.rkd import rkd_loss

__all__ = ["aggregate_logits", "at_loss", "ckd_loss", "dist_loss", "dkd_loss", "kd_loss", "nce_loss", "nicd_loss",
           "picd_loss", "refilled_stage1_loss", "refilled_stage2_loss", "rkd_loss", "sparse_recode", "standardize_logits"]

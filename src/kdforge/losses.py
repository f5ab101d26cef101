"""Pure loss functions of every method, for use in your own training loop."""

from kdforge.methods.at import at_loss
from kdforge.methods.ckd import ckd_loss
from kdforge.methods.crd import nce_loss
from kdforge.methods.dist import dist_loss
from kdforge.methods.dkd import dkd_loss
from kdforge.methods.ickd import aggregate_logits, nicd_loss, picd_loss
from kdforge.methods.kd import kd_loss
from kdforge.methods.kdsvd import kdsvd_loss
from kdforge.methods.kr import sparse_recode
from kdforge.methods.logit_std import standardize_logits
from kdforge.methods.nst import nst_loss
from kdforge.methods.ofd import ofd_margin, ofd_partial_l2
from kdforge.methods.pkt import pkt_loss
from kdforge.methods.refilled import refilled_stage1_loss, refilled_stage2_loss
from kdforge.methods.reviewkd import hcl_loss
from kdforge.methods.rkd import rkd_loss
from kdforge.methods.sp import sp_loss
from kdforge.methods.vid import vid_loss

__all__ = ["aggregate_logits", "at_loss", "ckd_loss", "dist_loss", "dkd_loss", "hcl_loss", "kd_loss", "kdsvd_loss",
           "nce_loss", "nicd_loss", "nst_loss", "ofd_margin", "ofd_partial_l2", "picd_loss", "pkt_loss",
           "refilled_stage1_loss", "refilled_stage2_loss", "rkd_loss", "sp_loss", "sparse_recode", "standardize_logits",
           "vid_loss"]

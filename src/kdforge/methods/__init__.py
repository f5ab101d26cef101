"""Method registry: one file per method, one line here to register it."""

from __future__ import annotations

from kdforge.methods.at import AT
from kdforge.methods.base import Method, MethodContext, ModelOutput, StepState
from kdforge.methods.ce import CE
from kdforge.methods.ckd import CKD
from kdforge.methods.crd import CRD
from kdforge.methods.dist import DIST
from kdforge.methods.dkd import DKD
from kdforge.methods.dml import DML
from kdforge.methods.fitnet import FitNet
from kdforge.methods.ickd import ICKD, ICKDOnline, ICKDTeacherFree
from kdforge.methods.kd import KD
from kdforge.methods.kdsvd import KDSVD
from kdforge.methods.kr import KnowledgeRepresenting, KnowledgeRepresentingKD
from kdforge.methods.ls import LabelSmoothing
from kdforge.methods.nst import NST
from kdforge.methods.ofd import OFD
from kdforge.methods.pkt import PKT
from kdforge.methods.refilled import Refilled
from kdforge.methods.reviewkd import ReviewKD
from kdforge.methods.rkd import RKD
from kdforge.methods.sp import SP
from kdforge.methods.tfkd import TfKD
from kdforge.methods.vid import VID
from kdforge.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.add("ce", CE)
METHODS.add("kd", KD)
METHODS.add("ckd", CKD)
METHODS.add("dkd", DKD)
METHODS.add("dist", DIST)
METHODS.add("crd", CRD)
METHODS.add("kr", KnowledgeRepresenting)
METHODS.add("kr_kd", KnowledgeRepresentingKD)
METHODS.add("fitnet", FitNet)
METHODS.add("at", AT)
METHODS.add("rkd", RKD)
METHODS.add("refilled", Refilled)
METHODS.add("ickd", ICKD)
METHODS.add("ickd_online", ICKDOnline)
METHODS.add("ickd_tf", ICKDTeacherFree)
METHODS.add("dml", DML)
METHODS.add("tfkd", TfKD)
METHODS.add("ls", LabelSmoothing)
METHODS.add("nst", NST)
METHODS.add("pkt", PKT)
METHODS.add("sp", SP)
METHODS.add("vid", VID)
METHODS.add("kdsvd", KDSVD)
METHODS.add("reviewkd", ReviewKD)
METHODS.add("ofd", OFD)


def build_method(name: str, args: dict, ctx: MethodContext) -> Method:
    from kdforge.config import from_dict

    cls = METHODS.get(name)
    return cls(from_dict(cls.Config, args, "method_args"), ctx)


__all__ = ["METHODS", "Method", "MethodContext", "ModelOutput", "StepState", "build_method"]

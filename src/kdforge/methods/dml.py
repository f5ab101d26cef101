"""`dml`: deep mutual learning (Zhang et al., CVPR 2018). No teacher: P peers of the student's architecture
train together; each minimises its CE plus the mean KL to the other peers' (detached) predictions."""

from __future__ import annotations

from dataclasses import dataclass

from kdforge.errors import ConfigError
from kdforge.methods.base import Method
from kdforge.methods.peers import PeerGroup, mutual_loss


@dataclass
class DMLConfig:
    peers: int = 2
    temperature: float = 1.0
    ce_weight: float = 1.0
    dml_weight: float = 1.0

    def __post_init__(self):
        if self.peers < 2:
            raise ConfigError(f"method_args.peers must be at least 2, got {self.peers}")
        if self.temperature <= 0:
            raise ConfigError(f"method_args.temperature must be positive, got {self.temperature}")


class DML(Method):
    Config = DMLConfig
    description = "deep mutual learning: peers trained together, CE + KL to the other peers"

    def __init__(self, cfg: DMLConfig, ctx):
        super().__init__(cfg, ctx)
        self.peers = PeerGroup(ctx.build_student, cfg.peers)

    def modules_to_compile(self):
        return self.peers.modules_to_compile()

    def forward(self, batch, student, teacher, state):
        logits = [student.logits] + [out.logits for out in self.peers(batch.input)]
        ce = sum(self.cross_entropy(z, batch.target) for z in logits)
        return {"ce": self.cfg.ce_weight * ce, "dml": self.cfg.dml_weight * mutual_loss(logits, self.cfg.temperature)}

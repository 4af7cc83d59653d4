"""The three training phases of the thesis and which epoch belongs to which."""

from __future__ import annotations

from training.config import PhaseConfig

BACKBONE, AGENT, JOINT = "backbone", "agent", "joint"


def phase_of(epoch: int, p: PhaseConfig) -> str:
    """Phase of a 0-based epoch: backbone, then agent (backbone frozen), then joint."""
    if epoch < p.backbone_epochs:
        return BACKBONE
    if epoch < p.backbone_epochs + p.agent_epochs:
        return AGENT
    return JOINT


def trains_backbone(phase: str) -> bool:
    return phase in (BACKBONE, JOINT)


def trains_agent(phase: str) -> bool:
    return phase in (AGENT, JOINT)


def backbone_training_epochs(p: PhaseConfig) -> int:
    """Epochs that train the backbone (phases backbone and joint): its lr schedule advances."""
    return p.backbone_epochs + p.joint_epochs

"""The resumable state's position: the backbone's optimiser updates (the lr schedule's place),
named backbone_updates; states saved while it was called backbone_step resume at the same place."""

import json

from training.trainer.session import Progress, progress_of
from training.trainer.state import STATE_DIR

INFO = {"epoch": 2, "seconds": 1.5, "history": [{"epoch": 1}, {"epoch": 2}]}


def test_an_old_state_resumes_at_the_same_update():
    old = progress_of({**INFO, "backbone_step": 40})
    assert (
        old
        == progress_of({**INFO, "backbone_updates": 40})
        == Progress(2, 40, 1.5, INFO["history"])
    )


def test_a_saved_state_names_the_updates(trained):
    info = json.loads((trained["run"] / STATE_DIR / "state.json").read_text())
    assert "backbone_step" not in info and info["backbone_updates"] > 0
    assert progress_of(info).backbone_updates == info["backbone_updates"]

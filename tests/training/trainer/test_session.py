"""A stage started from a checkpoint continues the data epochs instead of replaying them."""

from dataclasses import replace

from model.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.trainer.distributed import init_runtime
from training.trainer.session import Progress, open_session, train_epoch


class EpochRecorder:
    """A batch source that notes which data epochs were asked of it."""

    def __init__(self, source) -> None:
        self.source, self.epochs = source, []

    def batches(self, epoch, max_batches=None):
        self.epochs.append(epoch)
        return self.source.batches(epoch, max_batches)

    def num_batches(self, max_batches=None):
        return self.source.num_batches(max_batches)


def _stage_after(trained, tmp_path, epochs_of_stage=1):
    first = load_checkpoint(trained["out"]).train
    config = {**first["config"], "init_from": str(trained["out"])}
    config["phases"] = {**config["phases"], "backbone_epochs": epochs_of_stage}
    config["phases"].update(agent_epochs=0, joint_epochs=0)
    cfg = TrainConfig.from_dict(config)
    return first, open_session(cfg, init_runtime(cfg.device, cfg.threads), tmp_path / "run")


def test_a_stage_from_a_checkpoint_reads_the_data_epochs_after_its_stages(trained, tmp_path):
    first, s = _stage_after(trained, tmp_path)
    assert first["epochs"] == 3 and s.data_epochs_before == 3
    recorder = EpochRecorder(s.train_it)
    train_epoch(replace(s, train_it=recorder), 0, Progress(), quiet=True)
    # Epoch 0 of this stage is data epoch 3: other orders, crops and flips than the images the
    # first stage's epoch 0 trained on.
    assert recorder.epochs == [3]
    x_first, _ = next(iter(s.train_it.batches(0)))
    x_here, _ = next(iter(s.train_it.batches(3)))
    assert not x_first.equal(x_here)


def test_a_first_stage_starts_at_data_epoch_zero(trained, tmp_path):
    cfg = TrainConfig.from_dict(load_checkpoint(trained["out"]).train["config"])
    s = open_session(cfg, init_runtime(cfg.device, cfg.threads), tmp_path / "run")
    assert cfg.init_from is None and s.data_epochs_before == 0

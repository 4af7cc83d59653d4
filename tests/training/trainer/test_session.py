"""A fit started from a checkpoint continues the data epochs instead of replaying them."""

from dataclasses import replace

from model.checkpoint import load_checkpoint, save_checkpoint
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


def _fit_after(trained, tmp_path, epochs_of_fit=1, init_from=None):
    first = load_checkpoint(trained["out"]).train
    config = {**first["config"], "init_from": str(init_from or trained["out"])}
    config["phases"] = {**config["phases"], "backbone_epochs": epochs_of_fit}
    config["phases"].update(agent_epochs=0, joint_epochs=0)
    cfg = TrainConfig.from_dict(config)
    return first, open_session(cfg, init_runtime(cfg.device, cfg.threads), tmp_path / "run")


def test_a_fit_from_a_checkpoint_reads_the_data_epochs_after_its_fits(trained, tmp_path):
    first, s = _fit_after(trained, tmp_path)
    assert first["epochs"] == 3 and s.data_epochs_before == 3
    recorder = EpochRecorder(s.train_it)
    train_epoch(replace(s, train_it=recorder), 0, Progress(), quiet=True)
    # Epoch 0 of this fit is data epoch 3: other orders, crops and flips than the images the
    # first fit's epoch 0 trained on.
    assert recorder.epochs == [3]
    x_first, _ = next(iter(s.train_it.batches(0)))
    x_here, _ = next(iter(s.train_it.batches(3)))
    assert not x_first.equal(x_here)


def test_a_first_fit_starts_at_data_epoch_zero(trained, tmp_path):
    cfg = TrainConfig.from_dict(load_checkpoint(trained["out"]).train["config"])
    s = open_session(cfg, init_runtime(cfg.device, cfg.threads), tmp_path / "run")
    assert cfg.init_from is None and s.data_epochs_before == 0


# Two earlier fits whose epochs (4 + 3) differ from the checkpoint's own (3), so a record whose
# list went unread would show.
CHAIN = [
    {"name": "base", "wall_seconds": 1.0, "epochs": 4},
    {"name": "loops", "wall_seconds": 1.0, "epochs": 3},
]


def _checkpoint_listing_chain(trained, directory, key):
    """The trained checkpoint again, its training record listing CHAIN under `key`."""
    ckpt = load_checkpoint(trained["out"])
    record = {k: v for k, v in ckpt.train.items() if k not in ("fits", "stages")}
    save_checkpoint(
        directory,
        ckpt.net,
        name=ckpt.name,
        version=ckpt.version,
        classes=ckpt.classes,
        preprocessing=ckpt.preprocessing,
        train={**record, key: CHAIN},
    )
    return directory


def test_a_checkpoint_listing_its_fits_as_stages_continues_the_same_data_epochs(trained, tmp_path):
    # Checkpoints written before a chained run was called a fit list the chain as "stages";
    # the embedded ones are checksummed, so they are read as they are.
    data_epochs = {}
    for key in ("fits", "stages"):
        ckpt = _checkpoint_listing_chain(trained, tmp_path / key, key)
        _, s = _fit_after(trained, tmp_path / f"{key}-run", init_from=ckpt)
        data_epochs[key] = s.data_epochs_before
    assert data_epochs == {"fits": 7, "stages": 7}

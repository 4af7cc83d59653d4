import tarfile

import pytest

from training.data import download, load_split
from training.data.synthetic import write_binary_layout


def test_download_fetches_and_extracts_the_official_archive(tmp_path, monkeypatch):
    source = write_binary_layout("cifar100", tmp_path / "src", n_train=20, n_test=10)
    archive = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-100-binary", arcname="cifar-100-binary")
    monkeypatch.setitem(download.URLS, "cifar100", archive.as_uri())
    split = load_split("cifar100", "train", tmp_path / "data", download=True)
    assert len(split) == 20
    # Already present: no second download (the URL now points nowhere).
    monkeypatch.setitem(download.URLS, "cifar100", (tmp_path / "gone.tar.gz").as_uri())
    assert download.ensure_downloaded("cifar100", tmp_path / "data").name == "cifar-100-binary"


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(download.URLS, "cifar10", (tmp_path / "missing.tar.gz").as_uri())
    with pytest.raises(RuntimeError, match="place the official binary layout"):
        download.ensure_downloaded("cifar10", tmp_path)

"""Optional download of the official binary archives (urllib + tarfile; no torchvision)."""

from __future__ import annotations

import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from training.data.cifar import LAYOUTS, dataset_folder

URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
}


def ensure_downloaded(dataset: str, data_dir: Path, timeout_s: float = 60.0) -> Path:
    """Returns the dataset folder, downloading and extracting the archive if files are missing."""
    folder = dataset_folder(dataset, data_dir)
    layout = LAYOUTS[dataset]
    if all((folder / f).exists() for f in layout.train_files + layout.test_files):
        return folder
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    url = URLS[dataset]
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, archive.open("wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RuntimeError(
                f"could not download {url} ({exc}); without internet, place the official "
                f"binary layout at {folder} yourself"
            ) from exc
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(data_dir, filter="data")  # "data" refuses absolute paths and links out
    return folder

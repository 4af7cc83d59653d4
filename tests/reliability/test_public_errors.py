"""Load errors leave the process naming files relative to the model repository, never with
the server's absolute paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.repository import MAX_LENGTH, public_message, scrub_paths
from tests.reliability.clean_errors import leaks


@pytest.mark.parametrize("model_dir", [Path("/srv/models"), Path("checkpoints")])
def test_files_in_the_repository_are_named_relative_to_it(model_dir):
    absolute = model_dir.resolve()
    text = f"{absolute}/cifar10/backbone.safetensors: sha256 does not match manifest.json"
    assert scrub_paths(text, model_dir) == (
        "cifar10/backbone.safetensors: sha256 does not match manifest.json"
    )
    assert scrub_paths(f"model directory {model_dir} does not exist", model_dir) == (
        "model directory <DYNALAY_MODEL_DIR> does not exist"
    )


def test_other_absolute_paths_keep_only_their_file_name():
    error = FileNotFoundError(2, "No such file or directory", "/usr/lib/python3/x/tokenizer.json")
    message = public_message(error, Path("/srv/models"))
    assert message.endswith("'…/tokenizer.json'") and leaks(message) == []
    assert scrub_paths("send application/json or image/png", Path("/m")) == (
        "send application/json or image/png"
    )


def test_a_public_message_is_one_bounded_line():
    message = public_message(ValueError("line one\nline two " + "x" * 1000), Path("/m"))
    assert "\n" not in message and len(message) <= MAX_LENGTH

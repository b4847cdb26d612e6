"""Nothing a user owns is lost, and every failure names its file (issue #44): run-folder locks, no run
replaced unless asked, `cct predict` never over its inputs, clean failures on a full disk, bad lists,
bad files and bad settings, bounds, and a study that stops on a signal to its own process.

The CLI cases run the real `cct` app (typer's CliRunner, or a subprocess of ``python -m cct_train.cli``
where processes or signals are the point) on tiny generated data with a tiny encoder (timm's
``test_resnet``, 32x32 images): each asserts the exit code, the message, and that no traceback is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.common.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
runner = CliRunner()


def _flat(text: str) -> str:
    """``text`` without any whitespace: rich wraps messages at 80 columns, inside long paths too, so
    messages and the phrases expected in them are compared without it (see :func:`_says`)."""
    return "".join(text.split())


def _says(message: str, *phrases: str) -> bool:
    """Whether ``message`` (an output passed through :func:`_flat`) holds every phrase."""
    return all(_flat(phrase) in message for phrase in phrases)


def _clean_failure(result: Any, code: int = 2) -> str:
    """Assert a CLI result failed with ``code`` and no traceback; return its output, unwrapped."""
    output = result.output
    assert result.exit_code == code, output
    assert "Traceback" not in output, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    return _flat(output)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cct_train.data import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny-data")
    generate_synthetic_dataset(root, n_train=8, n_val=2, size=(32, 32), seed=0)
    return root


def _tiny(root: Path, output: Path, **train: Any) -> dict[str, Any]:
    """A config that trains in well under a second per step on one core."""
    return {
        "experiment": {"name": "tiny", "output_dir": str(output), "seed": 0},
        "model": {"encoder": "timm:test_resnet", "psp_channels": 8, "perturbations": {"feature_noise": 1}},
        "data": {
            "dataset": "folder",
            "root": str(root),
            "split": {"n_labeled": 4, "seed": 0},
            "crop_size": [32, 32],
            "scale_range": [1.0, 1.0],
            "batch_size": 2,
            "val_batch_size": 2,
            "num_workers": 0,
            "check": "quick",
        },
        "train": {"iterations": 3, "eval_every": 0, "checkpoint_every": 1, "log_every": 1, **train},
    }


@pytest.fixture
def write_config(tiny_root: Path, tmp_path: Path) -> Callable[..., Path]:
    """``write_config(name, **train)``: tmp_path/<name>.yaml training into tmp_path/<name>."""

    def write(name: str = "run", **train: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_tiny(tiny_root, tmp_path / name, **train)))
        return path

    return write


def _train(config: Path, *extra: str) -> Any:
    return runner.invoke(app, ["train", "-c", str(config), *extra])


def _csv_steps(run: Path) -> list[int]:
    """The steps of the ``loss`` rows of a run's metrics.csv, in file order."""
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()[1:]
    return [int(r.split(",")[0]) for r in rows if r.split(",")[1:2] == ["loss"]]


def _logged_step(run: Path) -> int:
    try:
        return max(_csv_steps(run), default=0)
    except (OSError, ValueError, IndexError):
        return 0


# ---------------------------------------------------------------------------------- 1. run-folder lock
@pytest.mark.slow
def test_a_second_run_into_a_locked_folder_fails_at_once_naming_the_first(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 1: two processes, one output folder. The second fails at once naming the first's pid, and
    the first's checkpoint and log hold only its own steps."""
    config = write_config("run", iterations=100_000, checkpoint_every=1)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cct_train.cli", "train", "-c", str(config)]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _logged_step(run) < 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run did not start training in 120 s"
            time.sleep(0.1)
        started = time.monotonic()
        second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        message = _flat(second.stderr)
        assert _says(message, f"is in use by process {first.pid}")
        assert _says(message, "--set experiment.output_dir=")
        # Refused before the data check and the model: the time is Python's start-up and imports.
        assert time.monotonic() - started < 60
        assert first.poll() is None, "the first run must go on"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    steps = _csv_steps(run)
    assert steps == list(range(1, len(steps) + 1)), "metrics.csv mixes two runs"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == steps[-1]


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path: Path) -> None:
    """Case 1: stale locks. A process that took the lock and died of SIGKILL (no clean-up) leaves its
    record in the lock file, but the OS dropped its lock: the next run takes it."""
    from cct_train.common.rundir import LOCK_NAME, RunFolderLock

    code = (
        "import os, sys; from cct_train.common.rundir import RunFolderLock; "
        "RunFolderLock(sys.argv[1]).acquire(); os.kill(os.getpid(), 9)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=ENV, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert '"pid"' in (tmp_path / LOCK_NAME).read_text()  # the dead holder's record is still there
    with RunFolderLock(tmp_path) as lock:
        assert lock.held
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: names no one


# ---------------------------------------------------------------------- 2. no run replaced unless asked
def test_a_new_run_never_replaces_a_trained_run_without_overwrite(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 2: the same command again (no --resume) refuses and keeps the trained run; --resume auto
    continues it with a log that does not repeat steps; --overwrite replaces it on purpose."""
    run = tmp_path / "run"
    config = write_config("run", iterations=3)
    assert _train(config).exit_code == 0
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    weights = (run / "model.safetensors").read_bytes()

    message = _clean_failure(_train(config, "--set", "train.iterations=2"))
    assert _says(message, f"experiment.output_dir {run} already holds a trained run")
    assert _says(message, "last.pt at step 3 of 3")
    assert _says(message, "--resume auto")
    assert _says(message, "--overwrite")
    assert last.read_bytes() == before
    assert (run / "model.safetensors").read_bytes() == weights
    assert _csv_steps(run) == [1, 2, 3]

    # Another run's checkpoint, fine-tuned into this folder, would start a new run here: refused too.
    other = write_config("other", iterations=1)
    assert _train(other).exit_code == 0
    foreign = tmp_path / "other" / "checkpoints" / "last.pt"
    assert _says(_clean_failure(_train(config, "--resume", str(foreign))), "already holds a trained run")
    assert last.read_bytes() == before

    resumed = _train(config, "--resume", "auto", "--set", "train.iterations=5")
    assert resumed.exit_code == 0, resumed.output
    assert _csv_steps(run) == [1, 2, 3, 4, 5]

    replaced = _train(config, "--overwrite", "--set", "train.iterations=2")
    assert replaced.exit_code == 0, replaced.output
    assert load_checkpoint(last)["step"] == 2
    assert _csv_steps(run) == [1, 2]


# ------------------------------------------------------------------------------- 3-4. cct predict
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported model (random weights: what it predicts does not matter here)."""
    from cct_train.common.checkpoint import export_weights
    from cct_train.models.cct import CCTModel

    model = CCTModel("timm:test_resnet", num_classes=3, perturbations={}, psp_channels=8)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    export_weights(path, model, model.config, ["a", "b", "c"], [[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    return path


def _photo(path: Path, value: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 32, 3), value, dtype=np.uint8)).save(path)
    return path.read_bytes()


def test_predict_refuses_an_output_folder_that_is_or_is_inside_the_input(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Case 3: `-o` equal to the input folder (which overwrote the photos) or inside it is refused before
    anything is written; the photos are untouched."""
    photos = tmp_path / "photos"
    original = {name: _photo(photos / name, 40 * i) for i, name in enumerate(("a.png", "b.png"))}
    for output in (photos, photos / "masks"):
        result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(output)])
        message = _clean_failure(result)
        assert _says(message, f"-o {output} is")
        assert _says(message, "Choose an output folder outside")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == original
    # A single image predicted into its own folder would write a.png over a.png: refused too.
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos / "a.png"), "-o", str(photos)])
    assert _says(_clean_failure(result), "would overwrite the input image")
    assert (photos / "a.png").read_bytes() == original["a.png"]


def test_predict_keeps_relative_paths_and_extensions_apart(tiny_model: Path, tmp_path: Path) -> None:
    """Case 4: a.png, a.jpg and sub/a.png give three predictions (not one file written three times); a
    second predict into the same folder needs --overwrite."""
    photos = tmp_path / "photos"
    for i, name in enumerate(("a.png", "a.jpg", "sub/a.png")):
        _photo(photos / name, 60 * i)
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _says(_flat(result.output), "3 predictions written")
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == [
        "a_jpg.png",
        "a_jpg_overlay.png",
        "a_png.png",
        "a_png_overlay.png",
        "sub/a.png",
        "sub/a_overlay.png",
    ]
    again = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out)])
    assert _says(_clean_failure(again), "pass --overwrite to replace earlier predictions")
    again = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output


# ------------------------------------------------------------------------------------ 5. a full disk
#: What torch.save raised when a 30 MB tmpfs filled up during a checkpoint (the probe's case 5).
TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 27332928 vs 27332816"


def test_a_full_disk_during_a_checkpoint_says_so_and_keeps_the_last_one(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 5: torch.save reports a full disk as a RuntimeError, not an OSError; the message still says
    which file, that the previous checkpoint is intact, and what to do, and no partial file is left."""
    import torch

    real_save = torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            Path(f).write_bytes(b"\0" * 1000)
            raise RuntimeError(TORCH_DISK_FULL)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    message = _clean_failure(_train(write_config("run", iterations=4)))
    assert _says(message, f"could not write the checkpoint {run / 'checkpoints' / 'last.pt'}")
    assert _says(message, "the write stopped after 0.0 MB")
    assert _says(message, TORCH_DISK_FULL)  # brackets and all: not taken for rich markup
    assert _says(message, "The previous checkpoint there, if any, is intact")
    assert _says(message, "Free disk space")
    assert _says(message, "--resume auto")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file-size limit (RLIMIT_FSIZE)")
def test_a_real_write_limit_fails_cleanly_in_the_cct_process(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 5 without injection: the `cct` process may write no file over 1 MB (``ulimit -f``), so the
    real torch.save of a 3 MB checkpoint fails inside PyTorch's writer, as on a full disk."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    config = write_config("run", iterations=2)
    command = [sys.executable, "-m", "cct_train.cli", "train", "-c", str(config)]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    message = _flat(done.stderr)
    assert _says(message, f"could not write the checkpoint {tmp_path / 'run' / 'checkpoints' / 'last.pt'}:")
    assert _says(message, "File too large") or _says(message, "unexpected pos")
    assert not list((tmp_path / "run").rglob("*.tmp"))


# --------------------------------------------------------------- 6. partial files of killed writes
def test_partial_checkpoint_files_of_a_killed_run_are_removed_by_the_next_run(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 6: a SIGKILL during an atomic write leaves its temporary file; the next run in the folder
    (it holds the lock, so no live write is among them) removes such files, says so, and nothing else."""
    run = tmp_path / "run"
    config = write_config("run", iterations=2)
    assert _train(config).exit_code == 0
    partial = [
        run / "checkpoints" / ".last.pt.k2j4x9q1.tmp",
        run / "checkpoints" / ".best.pt.a1b2c3d4.tmp",
        run / ".model.safetensors.zz91ab02.tmp",
    ]
    for path in partial:
        path.write_bytes(b"\0" * 500_000)
    unrelated = run / "checkpoints" / ".notes.tmp"
    unrelated.write_text("mine")
    resumed = _train(config, "--resume", "auto", "--set", "train.iterations=3")
    assert resumed.exit_code == 0, resumed.output
    assert _says(_flat(resumed.output), "removed 3 partial file(s) (1.5 MB)")
    assert not any(path.exists() for path in partial)
    assert unrelated.read_text() == "mine"


# ------------------------------------------------------------ 7. no checkpoint named that does not exist
def test_nonfinite_stop_without_a_checkpoint_says_there_is_none(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 7: `--set train.optimizer.lr=.inf` stops after the non-finite steps and says that no
    checkpoint was saved, instead of naming checkpoints/last.pt as "the last good checkpoint"."""
    config = write_config("run", iterations=50, checkpoint_every=20, nonfinite_patience=5)
    message = _clean_failure(_train(config, "--set", "train.optimizer.lr=.inf"))
    assert _says(message, "the loss was NaN or infinite in 5 steps in a row")
    assert _says(message, "No checkpoint was saved (the first was due at step 20), so there is nothing")
    assert not _says(message, "last good checkpoint")
    assert _says(message, "train.optimizer.lr (now inf)")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_nonfinite_weights_are_never_saved_over_a_good_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    """Case 7: weights that turned infinite after a good checkpoint are not written over it, and the
    message names that checkpoint with its true step."""
    import torch

    from cct_train.config import config_from_dict
    from cct_train.engine.trainer import NonFiniteLossError, Trainer

    run = tmp_path / "run"
    Trainer(config_from_dict(_tiny(tiny_root, run, iterations=2)), quiet=True).fit()
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    trainer = Trainer(config_from_dict(_tiny(tiny_root, run, iterations=6)), quiet=True)
    trainer.resume(last)
    with torch.no_grad():
        next(trainer.unwrapped.parameters()).fill_(float("inf"))  # what an infinite step would leave
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = _flat(str(info.value))
    assert _says(message, "became NaN or infinite by step 3, so they were not saved")
    assert _says(message, f"The last good checkpoint is {last} (step 2)")
    assert last.read_bytes() == before


# -------------------------------------------------------------- 8. unreadable files named, not traced
def _copy_data(tiny_root: Path, tmp_path: Path) -> Path:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_root, data)
    return data


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_image_with_the_check_off_is_named_in_a_few_lines(
    tiny_root: Path, tmp_path: Path, workers: int
) -> None:
    """Case 8: `data.check=off` and a truncated image: one message naming the file and what to do, not
    PIL's traceback (also from a DataLoader worker process, whose traceback torch puts in the message)."""
    data = _copy_data(tiny_root, tmp_path)
    images = sorted((data / "images").iterdir())
    for image in images:  # every one: whichever the first batch holds fails
        image.write_bytes(image.read_bytes()[:120])
    raw = _tiny(data, tmp_path / "run")
    raw["data"].update(check="off", num_workers=workers)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = _train(config)
    message = _clean_failure(result)
    assert len(result.output.splitlines()) < 15, result.output
    assert any(_says(message, f"{image}: the image of sample {image.stem!r}") for image in images)
    assert _says(message, "cannot be decoded")
    assert _says(message, "cct data check")
    assert not _says(message, "Original Traceback")


def test_a_corrupt_safetensors_as_model_weights_is_named(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 8: a corrupt .safetensors as model.weights: the file is named, not SafetensorError's bare
    'header too large'."""
    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(b"\xff" * 64)
    result = _train(write_config("run"), "--set", f"model.weights={weights}")
    message = _clean_failure(result)
    assert _says(message, f"{weights} cannot be read as a .safetensors weights file")
    assert _says(message, "download or export it again")


# ---------------------------------------------------------------------------- 9. a YAML tag in --set
def test_a_python_tag_in_set_is_refused_with_a_message_and_never_run(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 9: `--set 'train.iterations=!!python/object/apply:os.system [...]'` gives the clean message
    the same tag in a YAML file gets, and the command never runs."""
    marker = tmp_path / "ran"
    override = f"train.iterations=!!python/object/apply:os.system ['touch {marker}']"
    message = _clean_failure(_train(write_config("run"), "--set", override))
    assert _says(message, 'override "train.iterations=!!python/object/apply:os.system')
    assert _says(message, "the value is not plain YAML")
    assert _says(message, "tags such as !!python/... are refused")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()  # refused before anything is written


# -------------------------------------------------------------- 10. a resume with other model settings
def test_resume_with_other_model_settings_names_the_setting(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 10: `--resume` after changing model.psp_channels names the setting and both values (and the
    override that resumes), not 36 'size mismatch' lines."""
    config = write_config("run", iterations=2)
    assert _train(config).exit_code == 0
    result = _train(
        config, "--resume", "auto", "--set", "model.psp_channels=16", "--set", "train.iterations=3"
    )
    message = _clean_failure(result)
    assert _says(message, "was trained with model.psp_channels=8 (the config says 16)")
    assert _says(message, "--set model.psp_channels=8")
    assert not _says(message, "size mismatch")
    assert len(result.output.splitlines()) < 12, result.output


# -------------------------------------------------------------------------------- 11. split lists
def test_split_lists_with_a_bom_spaces_and_absolute_paths(tmp_path: Path) -> None:
    """Case 11: a UTF-8 BOM is not part of the first name; names with spaces can be listed (quoted or
    tab-separated); a missing absolute path is reported as written, with its line."""
    from cct_train.data.camvid import CamVid
    from cct_train.data.lists import read_list

    listed = tmp_path / "list.txt"
    listed.write_bytes('\ufeffa.png\n"my photo.png" "my mask.png"\nb c.png\td e.png\n'.encode())
    assert [e.tokens for e in read_list(listed)] == [
        ("a.png",),
        ("my photo.png", "my mask.png"),
        ("b c.png", "d e.png"),
    ]

    root = tmp_path / "camvid"
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "a b.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "trainannot" / "a b.png")
    (root / "train.txt").write_bytes(
        '\ufeff"train/a b.png" "trainannot/a b.png"\n/elsewhere/train/gone.png trainannot/gone.png\n'.encode()
    )
    assert CamVid(root, "train", missing="skip").names == ["a b"]
    with pytest.raises(FileNotFoundError) as info:
        CamVid(root, "train")
    message = str(info.value)
    assert f"{root / 'train.txt'}:2: image '/elsewhere/train/gone.png' not found" in message
    assert f"(looked for {root / 'train' / 'gone.png'})" in message

    (root / "train.txt").write_text("train/a b.png trainannot/a b.png\n")
    with pytest.raises(ValueError, match=r"train\.txt:1: expected 'image label', got 4 words") as error:
        CamVid(root, "train")
    assert "must be quoted" in str(error.value)


def test_data_check_names_a_bom_list_entry_and_its_line(tiny_root: Path, tmp_path: Path) -> None:
    """Case 11 through `cct data check`: a labeled list saved with a BOM finds its first name."""
    data = _copy_data(tiny_root, tmp_path)
    names = sorted(p.stem for p in (data / "images").iterdir())
    labeled = tmp_path / "labeled.txt"
    labeled.write_bytes(("\ufeff" + "\n".join(names[:4]) + "\n").encode())
    raw = _tiny(data, tmp_path / "run")
    raw["data"]["split"] = {"labeled_list": str(labeled)}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["data", "check", "-c", str(config), "--quick"])
    assert result.exit_code == 0, result.output
    assert "unknown-name" not in result.output


# ----------------------------------------------------------------------- 12. mixed sizes in the check
def test_data_check_accepts_an_image_of_another_size(tiny_root: Path, tmp_path: Path) -> None:
    """Case 12, after issue 41 made mixed sizes legal: training scales and crops each sample of a
    mixed-size batch before collation and validates each image at its own size, so a consistent image +
    mask pair of another size among the others is no problem for the check; a batch that mixes sizes
    without those loaders (``collate`` itself) still names its samples and the way out."""
    data = _copy_data(tiny_root, tmp_path)
    odd = sorted((data / "images").iterdir())[2]
    Image.open(odd).resize((48, 40)).save(odd)
    mask = data / "masks" / f"{odd.stem}.png"
    Image.open(mask).resize((48, 40), Image.Resampling.NEAREST).save(mask)
    raw = _tiny(data, tmp_path / "run")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["data", "check", "-c", str(config), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "mixed-size" not in result.output
    assert "size-mismatch" not in result.output

    import torch

    from cct_train.data.loaders import collate

    with pytest.raises(ValueError, match=r"different sizes \(WxH\): a 32x32, b 48x40") as info:
        collate(
            [
                {"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "name": "a"},
                {"image": torch.zeros(3, 40, 48, dtype=torch.uint8), "name": "b"},
            ]
        )
    assert "cct data check" in str(info.value)


# ------------------------------------------------------------------------------------- 13. bounds
def test_decoder_counts_and_image_sizes_have_upper_bounds(
    write_config: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    """Case 13: 100,000 auxiliary decoders are refused at load time (naming the key), the same count in a
    model file's metadata is refused by `cct predict` before building anything, and a 10000x10000 image
    is refused by name by the data check and by predict before it is decoded."""
    import json
    import time as clock

    from safetensors import safe_open
    from safetensors.torch import save_file

    result = _train(write_config("run"), "--set", "model.perturbations={feature_noise: 100000}")
    message = _clean_failure(result)
    assert _says(message, "model.perturbations")
    assert _says(message, "100000 auxiliary decoders in all")
    assert _says(message, "at most 128 are built")

    # A shared model file whose metadata asks for 100,000 decoders.
    with safe_open(str(tiny_model), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safe_open handle)
    model_config = json.loads(meta["model_config"])
    model_config["perturbations"] = {"feature_noise": 100_000}
    hostile = tmp_path / "hostile.safetensors"
    save_file(tensors, str(hostile), metadata={**meta, "model_config": json.dumps(model_config)})
    photos = tmp_path / "photos"
    _photo(photos / "a.png", 10)
    started = clock.monotonic()
    result = runner.invoke(app, ["predict", str(hostile), str(photos), "-o", str(tmp_path / "out")])
    message = _clean_failure(result)
    assert clock.monotonic() - started < 30
    assert _says(message, f"{hostile}: the model its metadata describes cannot be built")
    assert _says(message, "100000 auxiliary decoders")

    # A 10000x10000 image: a PNG of one colour is small on disk.
    huge = photos / "huge.png"
    Image.new("RGB", (10_000, 10_000)).save(huge, optimize=False)
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "-o", str(tmp_path / "out2")])
    assert _says(_clean_failure(result), f"{huge}: 10000x10000 pixels (100 MP), over the limit of 64 MP")

    from cct_train.data.base import read_image

    with pytest.raises(ValueError, match="over the limit of 64 MP"):
        read_image(huge)


def test_data_check_reports_a_too_large_image(tiny_root: Path, tmp_path: Path) -> None:
    """Case 13 in `cct data check`: the image over the bound is a `too-large` problem naming it."""
    data = _copy_data(tiny_root, tmp_path)
    big = sorted((data / "images").iterdir())[1]
    Image.new("RGB", (9000, 8000)).save(big)
    Image.new("L", (9000, 8000)).save(data / "masks" / f"{big.stem}.png")
    raw = _tiny(data, tmp_path / "run")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["data", "check", "-c", str(config), "--workers", "0"])
    assert result.exit_code == 1, result.output
    assert _says(_flat(result.output), f"too-large: {big}: image is 9000x8000 pixels (72 MP), over the limit")


# ---------------------------------------------------------- 14. resume auto, replayed log rows, modes
def test_resume_auto_without_a_checkpoint_says_so_and_files_honour_the_umask(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Case 14: `--resume auto` with no checkpoint says in one line that it starts from scratch;
    checkpoints and model files get 0666 less the umask (mkstemp made them 0600)."""
    previous = os.umask(0o022)
    try:
        result = _train(write_config("run", iterations=2), "--resume", "auto")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert _says(
        _flat(result.output),
        f"--resume auto: no checkpoint at {run / 'checkpoints' / 'last.pt'}; starting from scratch",
    )
    for path in (run / "checkpoints" / "last.pt", run / "model.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, (path, oct(path.stat().st_mode))


def test_a_resumed_run_does_not_repeat_the_replayed_steps_in_its_log(tiny_root: Path, tmp_path: Path) -> None:
    """Case 14: a run that died after logging step 5 with its checkpoint at step 4 replays step 5 when
    resumed: metrics.csv holds each step once, in order."""
    from cct_train.config import config_from_dict
    from cct_train.engine.trainer import Trainer

    class Killed(Exception):
        pass

    def die_at_5(step: int, logs: dict[str, float]) -> None:
        if step == 5:
            raise Killed

    run = tmp_path / "run"
    config = config_from_dict(_tiny(tiny_root, run, iterations=6, checkpoint_every=4))
    with pytest.raises(Killed):
        Trainer(config, quiet=True).fit(die_at_5)
    assert _csv_steps(run) == [1, 2, 3, 4, 5]
    resumed = Trainer(config, quiet=True)
    resumed.resume(run / "checkpoints" / "last.pt")
    assert resumed.step == 4
    resumed.fit()
    assert _csv_steps(run) == [1, 2, 3, 4, 5, 6]


# -------------------------------------------------------- 15. a signal to the study process alone
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the study's workers as its children")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_study_process_alone_stops_every_worker_with_a_checkpoint(
    tiny_root: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """Case 15: `kill -INT` / `kill -TERM` of a running `cct study`'s own pid (what a scheduler or a user
    does; no signal reaches the workers) stops both training workers promptly, each run saving its
    checkpoint, and the study says that finished runs are kept."""
    import psutil

    base = _tiny(tiny_root, tmp_path / "unused", iterations=100_000, checkpoint_every=0)
    base["model"]["background"] = [0, 1, 2]
    study = {"name": "tiny", "budget": "test", "base": base, "n_labeled": [4], "seeds": [0, 1]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({**study, "methods": ["supervised"]}))
    runs = tmp_path / "runs"
    args = [
        "--config",
        str(tmp_path / "study.yaml"),
        "--output",
        str(tmp_path / "report"),
        "--runs",
        str(runs),
    ]
    command = [sys.executable, "-c", "from cct_train.cli.study import app; app()", *args, "--jobs", "2"]
    process = subprocess.Popen(
        [*command, "--threads", "1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    folders = [runs / "n4" / "supervised" / f"seed{seed}" for seed in (0, 1)]
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while not all(_logged_step(folder) >= 1 for folder in folders):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the runs did not start training within 240 s"
            time.sleep(0.2)
        workers = [
            child
            for child in psutil.Process(process.pid).children()
            if "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2, [w.cmdline() for w in workers]
        signalled = time.monotonic()
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
        stopped_after = time.monotonic() - signalled
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, "a worker kept training after the study was signalled"
    finally:
        if process.poll() is None:
            process.kill()
        for worker in workers:
            if worker.is_running():
                worker.kill()
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert _says(_flat(err), "interrupted: finished runs are kept")
    assert _says(_flat(out + err), f"{sig.name}: the runs in progress save their checkpoints and stop")
    assert stopped_after < 60, f"the study took {stopped_after:.0f} s to stop"
    for folder in folders:
        step = load_checkpoint(folder / "checkpoints" / "last.pt")["step"]
        assert 1 <= step < 100_000
        assert _csv_steps(folder)[-1] == step  # the log holds every step the checkpoint has

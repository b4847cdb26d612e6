"""A resized copy of the study's data, made once, so that no run decodes full-size images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cct_train.config import (
    Config,
    config_from_dict,
)


# ---------------------------------------------------------------------------------------------- data copy
def resized_copy(base: Config, size: tuple[int, int], dest: Path) -> Path:
    """Write the base config's train and val splits, resized to ``size`` (H, W), as a folder data set.

    Images are resized bilinearly (antialiased) and masks by nearest neighbour, exactly as ``data.resize``
    does on the fly; masks keep 255 as ignore. Sample names are kept (CSV lists with a name column), so
    ``make_split`` draws the same labeled images as on the original. Written once: a finished copy
    (``dataset.json`` present) is reused. Studies started side by side on one runs folder (``--n 20`` in
    one shell, ``--n 50`` in another) share the copy: a file lock beside ``dest`` lets the first write it
    while the others wait, instead of two processes writing one ``.partial`` folder at once.
    """
    if (dest / "dataset.json").is_file():
        return dest
    from filelock import FileLock  # a torch dependency; fcntl alone would not lock on Windows

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.with_name(dest.name + ".lock"))):
        if not (dest / "dataset.json").is_file():  # another process may have finished it while we waited
            _write_resized_copy(base, size, dest)
    return dest


def _write_resized_copy(base: Config, size: tuple[int, int], dest: Path) -> None:
    """Write the copy under ``dest``'s ``.partial`` name, then rename it into place (caller holds the lock)."""
    import shutil

    from PIL import Image

    from cct_train.data import build_dataset

    data = base.data
    splits = [s for s in (data.train_split, data.val_split) if s]
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():  # left by a process that was killed while writing: start clean
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "masks").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {}
    for split in splits:
        dataset: Any = build_dataset(data.dataset, root=data.root, split=split, resize=size, **data.options)
        meta = {
            "num_classes": int(dataset.num_classes),
            "class_names": list(dataset.class_names),
            "palette": [list(c) for c in dataset.palette],
            "ignore_index": 255,
            "source": {"dataset": data.dataset, "root": str(data.root), "resize": list(size)},
        }
        lines = ["image,mask,name"]
        for index in range(len(dataset)):  # one-off preprocessing, not a training hot path
            sample = dataset[index]
            stem = sample["name"].replace("/", "__")
            Image.fromarray(sample["image"].permute(1, 2, 0).numpy()).save(tmp / "images" / f"{stem}.png")
            Image.fromarray(sample["mask"].numpy().astype("uint8"), mode="L").save(
                tmp / "masks" / f"{stem}.png"
            )
            lines.append(f"images/{stem}.png,masks/{stem}.png,{sample['name']}")
        (tmp / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    if dest.exists():  # an older partial copy under the final name: replace it
        shutil.rmtree(dest)
    tmp.rename(dest)


def with_resized_data(base: Config, root: Path) -> Config:
    """The base config reading the resized folder copy at ``root`` instead of the original data."""
    config = base.to_dict()
    config["data"].update({"dataset": "folder", "root": str(root), "resize": None, "options": {}})
    return config_from_dict(config, "study base (resized copy)")

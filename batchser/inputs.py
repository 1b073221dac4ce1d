"""Inputs other than a Kaldi data dir: one audio file, a text file of paths, a folder of audio
files, and lhotse RecordingSet / CutSet manifests. Each becomes the same :class:`Corpus` of
utterances the Kaldi reader makes, so everything after the reader is shared.

Utterance ids, derived deterministically:

* one file: its name without the extension (``speech.wav`` -> ``speech``);
* a folder (searched recursively, files with one of ``extensions``, in sorted order) or a list
  of paths: the path relative to the folder (for a list: to the files' common directory),
  without the extension, ``/`` kept and white space turned into ``_``
  (``call1/agent.wav`` -> ``call1/agent``); when two files would get one id (``a.wav`` and
  ``a.flac``) the later ones keep their extension (``a.flac``);
* lhotse: a RecordingSet's recording ids; a CutSet's supervision ids (one utterance per
  supervision, its speaker as ``spk``, its emotion as the reference label when the supervision
  has one), or the cut id for a cut without supervisions.
"""
from __future__ import annotations

import itertools

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from .records import AudioSource, Corpus, CorpusError, ReadError, Utterance, is_url, redact, table_lines

AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "aiff", "aif", "au", "sph", "webm", "wma")
LHOTSE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def input_kind(path: Path) -> str:
    """'kaldi' | 'audio' | 'list' | 'lhotse' | 'folder' for what ``path`` holds."""
    name = path.name.lower()
    if path.is_dir():
        return "kaldi" if (path / "wav.scp").exists() else "folder"
    if name.endswith(LHOTSE_SUFFIXES):
        return "lhotse"
    if name.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS:
        return "audio"
    if name.endswith(".scp"):
        return "kaldi"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e
    if head[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM") or head[:3] == b"ID3":
        return "audio"
    first = next((l for l in head.decode("utf-8", "replace").lstrip("\ufeff").splitlines()
                  if l.strip() and not l.lstrip().startswith("#")), "")  # comments: as read_path_list skips them
    # one field per line (or a whole line that names a file): a list of paths; else wav.scp lines
    if first and (len(first.split()) == 1 or (path.parent / first.strip()).is_file() or Path(first.strip()).is_file()):
        return "list"
    return "kaldi"


def looks_like_path_list(path: Path, n: int = 20) -> bool:
    """Whether the first ``n`` lines of a file read as a wav.scp are each one existing audio file
    (a list of paths named like a wav.scp): what to tell a user whose every line is malformed."""
    try:
        lines = [line.strip() for _, line in itertools.islice(table_lines(path), n)]
    except CorpusError:
        return False
    return bool(lines) and all(len(l.split()) == 1 and not l.startswith("#") and Path(l).is_file() for l in lines)


def _ids(paths: Sequence[Path], root: Path) -> List[str]:
    out, seen = [], set()
    for p in paths:
        try:
            rel = p.relative_to(root)
        except ValueError:
            rel = Path(p.name)
        uid = "_".join(str(rel.with_suffix("")).split())
        if uid in seen:
            uid = "_".join(str(rel).split())
        seen.add(uid)
        out.append(uid)
    return out


def _corpus(paths: Sequence[Path], root: Path, list_file: str, lines: Optional[Sequence[int]] = None,
            errors: Sequence[ReadError] = (), spk_from_folder: bool = False) -> Corpus:
    c = Corpus(data_dir=root, wav_scp=Path(list_file))
    for k, (p, uid) in enumerate(zip(paths, _ids(paths, root))):
        rel = p.relative_to(root).parts if spk_from_folder and root in p.parents else ()
        c.utterances.append(Utterance(utt_id=uid, rec_id=uid, source=AudioSource("file", str(p)),
                                      list_file=list_file, line=lines[k] if lines else k + 1,
                                      spk=rel[0] if len(rel) > 1 else None))
    c.errors = list(errors)
    return c


def read_audio_file(path: Path) -> Corpus:
    return _corpus([path.resolve()], path.resolve().parent, str(path))


def read_folder(path: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS, spk_from_folder: bool = False) -> Corpus:
    """Every audio file under ``path``; ``spk_from_folder``: the first-level subfolder a file is
    in is its speaker (``corpus/alice/x.wav``: alice; files at the top have none)."""
    exts = {e.lower().lstrip(".") for e in extensions}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in exts)
    if not files:
        raise CorpusError(f"{path} is a directory without a wav.scp and without audio files "
                          f"({', '.join(sorted(exts))}; searched recursively)")
    return _corpus(files, path, str(path), spk_from_folder=spk_from_folder)


def read_path_list(path: Path, audio_root: Optional[str] = None) -> Corpus:
    """A text file of audio paths, one per line (relative ones resolve against ``audio_root``, else
    the current directory, as wav.scp paths do; lines starting with ``#`` are comments)."""

    base = Path(audio_root) if audio_root else Path.cwd()
    paths, lines, errors, urls = [], [], [], []
    for no, line in table_lines(path):
        if line.lstrip().startswith("#"):  # a comment
            continue
        if is_url(line.strip()):  # object storage or the web: read by the decoders, never here
            urls.append((no, line.strip()))
            continue
        p = Path(line.strip())
        full = p if p.is_absolute() else base / p
        if full.is_file():
            paths.append(full.resolve())
            lines.append(no)
        else:
            errors.append((no, full))
    root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else base
    c = _corpus(paths, root, str(path), lines)
    c.errors = [ReadError(_ids([full], root)[0], f"{path}:{no}: audio file not found: {full}") for no, full in errors]
    taken = {u.utt_id for u in c.utterances}
    for (no, url), uid in zip(urls, _url_ids([u for _, u in urls], taken)):
        c.utterances.append(Utterance(utt_id=uid, rec_id=uid, source=AudioSource("url", url, shown=redact(url)),
                                      list_file=str(path), line=no))
    return c


def _url_ids(urls: Sequence[str], taken: set) -> List[str]:
    """Ids of listed URLs: the object's name without the extension; where two would share one,
    the whole key (bucket/prefix/name, '/' as '_')."""
    from urllib.parse import urlparse

    stems = [Path(urlparse(u).path).stem or "url" for u in urls]
    out = []
    for u, st in zip(urls, stems):
        uid = st if stems.count(st) == 1 and st not in taken else "_".join(
            f"{urlparse(u).netloc}{urlparse(u).path}".rsplit(".", 1)[0].strip("/").split("/"))
        taken.add(uid)
        out.append(uid)
    return out


def read_lhotse(path: Path, allow_pipes: bool = True) -> Corpus:
    """A lhotse RecordingSet or CutSet manifest (lhotse is imported only here)."""
    try:
        from lhotse import load_manifest_lazy
        from lhotse.cut import Cut
    except ImportError as e:
        raise CorpusError(f"{path}: reading lhotse manifests needs lhotse (pip install lhotse)") from e
    try:
        items = load_manifest_lazy(path)
    except Exception as e:
        raise CorpusError(f"{path}: not a lhotse manifest: {type(e).__name__}: {e}") from e
    c = Corpus(data_dir=path.parent, wav_scp=path)
    for no, item in enumerate(items, 1):
        rec = item.recording if isinstance(item, Cut) else item
        if rec is None or not hasattr(rec, "sources"):
            c.errors.append(ReadError(getattr(item, "id", f"item{no}"),
                                      f"{path}:{no}: {type(item).__name__} without a recording"))
            continue
        src = _source(rec, allow_pipes)
        if isinstance(src, str):
            c.errors.append(ReadError(rec.id, f"{path}:{no}: recording {rec.id}: {src}"))
            continue
        if not isinstance(item, Cut):
            c.utterances.append(Utterance(utt_id=rec.id, rec_id=rec.id, source=src, duration=rec.duration,
                                          list_file=str(path), line=no))
            continue
        sups = list(item.supervisions)
        if not sups:
            c.utterances.append(Utterance(utt_id=item.id, rec_id=rec.id, source=src, start=item.start,
                                          end=item.start + item.duration, duration=item.duration,
                                          list_file=str(path), line=no))
        for s in sups:
            start = item.start + s.start
            emo = (s.custom or {}).get("emotion") if getattr(s, "custom", None) else None
            c.utterances.append(Utterance(utt_id=s.id, rec_id=rec.id, source=src, start=start,
                                          end=start + s.duration, duration=s.duration, spk=s.speaker,
                                          ref_label=emo, list_file=str(path), line=no))
    return c


def _source(rec, allow_pipes: bool):
    """The recording's first source as an AudioSource, or why it cannot be read."""
    if not rec.sources:
        return "no audio source"
    s = rec.sources[0]
    if s.type == "file":
        return AudioSource("file", str(s.source))
    if s.type == "command":
        return AudioSource("pipe", str(s.source)) if allow_pipes else f"command refused (--no-pipes): {s.source!r}"
    return f"audio source of type {s.type!r} is not supported (file and command are)"

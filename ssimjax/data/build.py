"""Building labelled sets so that no work is lost or trusted blindly.

- :func:`resumable_jobs` records each finished job (its result and the sha256 of each file it
  wrote) in the set's ``.progress.jsonl`` as it arrives; a build killed halfway continues where it
  stopped and ends with exactly the files an uninterrupted build writes.
- :func:`build_cached` builds a cached set in ``<name>.partial/`` beside it, one process at a time
  (a second process waits for the first, then uses its set), writes ``SHA256SUMS`` and renames the
  folder into place whole. A cached set is checked against ``SHA256SUMS`` on every use: a damaged
  file is reported in one line and only its job is done again.

This module does not import JAX.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ssimjax.data.labelling import iter_jobs
from ssimjax.files import append_line, disk_error, file_lock, sha256_file, write_text_atomic

log = logging.getLogger("ssimjax")

PROGRESS = ".progress.jsonl"
CHECKSUMS = "SHA256SUMS"


def _file_sha(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _records(out: Path) -> tuple[dict | None, list[dict]]:
    """``(header, records)`` of a folder's progress file; a line a kill tore is left out."""
    try:
        lines = (out / PROGRESS).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None, []
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    if not parsed or "build" not in parsed[0]:
        return None, []
    return parsed[0], [r for r in parsed[1:] if isinstance(r, dict) and isinstance(r.get("files"), dict) and "key" in r]


def _finished(out: Path, identity: dict) -> dict[int, dict]:
    """The jobs an earlier build of the same set recorded, whose files are still intact."""
    header, records = _records(out)
    if header != {"build": identity}:
        return {}
    return {int(r["key"]): r for r in records if all(_file_sha(out / n) == sha for n, sha in r["files"].items())}


def resumable_jobs(out: str | Path, fn, jobs: dict, identity: dict, workers: int | None = None, progress=None,
                   chunks_per_worker: int = 8) -> list[tuple[int, object]]:
    """``[(key, result)]``, by key, of ``fn(job)`` for each ``{key: job}``, over ``workers``
    processes. ``fn`` returns ``(key, result, files)``: a JSON-able result and the files it wrote
    under ``out``. Jobs an interrupted build of the same ``identity`` finished (files intact) are not
    done again."""
    out = Path(out)
    done = {k: r for k, r in _finished(out, identity).items() if k in jobs}
    todo = [job for key, job in jobs.items() if key not in done]
    if done and todo:
        log.info(f"{out}: continuing an interrupted build ({len(done)} of {len(jobs)} done, {len(todo)} to go)")
    if not done:
        write_text_atomic(out / PROGRESS, json.dumps({"build": identity}, sort_keys=True) + "\n")
    if progress and done:
        progress(len(done))
    for key, result, files in iter_jobs(fn, todo, workers, progress, chunks_per_worker):
        record = {"key": key, "result": result, "files": {name: sha256_file(out / name) for name in files}}
        append_line(out / PROGRESS, json.dumps(record, sort_keys=True))
        done[key] = record
    # Rewritten in key order: the same bytes however the build was interrupted or scheduled.
    lines = [{"build": identity}] + [done[k] for k in sorted(done)]
    write_text_atomic(out / PROGRESS, "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return [(k, done[k]["result"]) for k in sorted(done)]


def _data_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name not in (CHECKSUMS, PROGRESS) and not p.name.endswith(".tmp"))


def write_checksums(folder: str | Path) -> None:
    """``SHA256SUMS`` (as ``sha256sum`` writes it) over every file of a built set."""
    folder = Path(folder)
    write_text_atomic(folder / CHECKSUMS, "".join(f"{sha256_file(folder / n)}  {n}\n" for n in _data_files(folder)))


def damaged_files(folder: str | Path) -> list[str]:
    """The files of a built set that no longer match its ``SHA256SUMS`` (or are missing). A set
    built before sets carried checksums gets them now."""
    folder = Path(folder)
    try:
        lines = (folder / CHECKSUMS).read_text().splitlines()
    except FileNotFoundError:
        write_checksums(folder)
        return []
    except (OSError, UnicodeDecodeError):
        return [CHECKSUMS]
    bad = []
    for line in lines:
        sha, sep, name = line.partition("  ")
        if not sep or len(sha) != 64:
            bad.append(CHECKSUMS)
        elif _file_sha(folder / name) != sha:
            bad.append(name)
    return bad


def _forget(folder: Path, names: list[str]) -> None:
    """Removes damaged files and the progress records of the jobs that wrote them, so a build in
    ``folder`` does those jobs again (and rewrites the set's own files, always)."""
    names = set(names)
    header, records = _records(folder)
    if header is not None:
        kept = [header] + [r for r in records if not names & set(r["files"])]
        write_text_atomic(folder / PROGRESS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    for name in names | {CHECKSUMS}:
        (folder / name).unlink(missing_ok=True)


def build_cached(final: Path, build, log_fn=None, labels: str = "labels.csv") -> Path:
    """``final``, built by ``build(folder)`` (a builder that resumes in its folder and writes
    ``labels`` last) in ``<final>.partial/`` and renamed into place whole once ``SHA256SUMS`` is
    written. One process builds at a time; an interrupted build is continued; a damaged file of a
    built set is reported and its job done again."""
    final = Path(final)
    partial = final.with_name(final.name + ".partial")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(final, e) from None
    with file_lock(final.with_name(final.name + ".lock"), f"building {final.name}", log_fn):
        if final.is_dir():
            damaged = damaged_files(final) or ([] if (final / labels).is_file() else [labels])
            if not damaged:
                return final
            (log_fn or log.warning)(f"{final}: {len(damaged)} damaged file(s) ({', '.join(damaged[:3])}: "
                                    "checksum mismatch or missing); rebuilding them")
            shutil.rmtree(partial, ignore_errors=True)
            os.rename(final, partial)
            _forget(partial, damaged + [labels, "labels_meta.json"])
        try:
            partial.mkdir(exist_ok=True)
        except OSError as e:
            raise disk_error(partial, e) from None
        build(partial)
        write_checksums(partial)
        os.rename(partial, final)
    return final

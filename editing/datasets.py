"""Download the public CounterFact and zsRE files, so no ../shared folder is needed.

    python -m editing.datasets fetch [--dest DIR] [--base-url URL]
    python -m editing.datasets where

`fetch` downloads three files of GitHub repository Jometeorie/KnowledgeSpread at a fixed commit
(EasyEdit's data release), cuts the record ranges the commands use and writes the four results
in the layout of ../shared/data (default: <app data dir>/datasets, where the commands look
after $AMEND_SHARED_DATA). Each result must match the sha256 below, else nothing is written for
it: a changed upstream file is refused rather than silently evaluated on. Files are written to
a temporary name and renamed, so an interrupted run never leaves a half file. `--base-url`
points at a mirror (a local folder: file:///DIR, holding data/... as the repository does).

`where` prints, for each file, every place it is looked for and which one is used.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.records import (DATA_ENV, DATA_LAYOUT, FETCH_COMMAND, data_candidates,
                               fetched_data_dir, find_data_file)
from errors import AmendError, run_command

REPOSITORY = "Jometeorie/KnowledgeSpread"
COMMIT = "51d7402617c2e52bde0dc11b76e400c3725a181a"
BASE_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}"
TIMEOUT_S = 60.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class Cut:
    """One file of the layout: which upstream file it comes from and which records it keeps
    (None: the upstream bytes unchanged); `ascii` is how the JSON was written (json.dumps,
    indent 4, as the ../shared/data copies were)."""

    kind: str
    source: str
    upstream: str  # path inside the repository
    records: tuple[int, int] | None
    ascii: bool = True


CUTS = (Cut("eval", "counterfact", "data/counterfact/counterfact-edit.json", (0, 500)),
        Cut("eval", "zsre", "data/zsre/zsre_mend_train-1k.json", (0, 500), ascii=False),
        Cut("train", "counterfact", "data/counterfact/counterfact-train.json", None),
        Cut("train", "zsre", "data/zsre/zsre_mend_train-1k.json", (500, 1000), ascii=False))
# sha256 of each resulting file, computed from the ../shared/data copies (the same cuts).
SHA256 = {
    "counterfact/counterfact-edit-first500.json":
        "58fafce2d076e689c93878d4ec31ff47ff617b5964600787c9adf3869afa1e4d",
    "zsre/zsre_mend_train-1k-first500.json":
        "c474bb9cdfa97a306b48ffc45eea26b1513d8713f201146d4aba1734ac8a63a6",
    "train/counterfact-train.json":
        "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
    "train/zsre_mend_train-1k-last500.json":
        "e7e07ac8f11034edc913bca1b2eba0d287acb91f7c86b0200bb80af3e82581d6",
}


class OfflineError(AmendError):
    """The files could not be downloaded; the message says how to get them another way."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative(cut: Cut) -> str:
    return DATA_LAYOUT[(cut.kind, cut.source)]


def offline_help(base_url: str, dest: Path, reason: str) -> str:
    """What to do without a connection: the URLs, where the files go, or $AMEND_SHARED_DATA."""
    urls = "\n".join(f"       {base_url}/{upstream}"
                     for upstream in dict.fromkeys(c.upstream for c in CUTS))
    cuts = "\n".join(f"       {dest / _relative(c)}  <- "
                     + (f"{c.upstream}, whole" if c.records is None else
                        f"records {c.records[0]}-{c.records[1] - 1} of {c.upstream}")
                     for c in CUTS)
    return (f"cannot download the data sets ({reason}).\n"
            "Without a network connection here, either:\n"
            f"  1. download these files on a machine that has one:\n{urls}\n"
            "     keep their paths under a folder DIR (DIR/data/...), bring DIR here and run\n"
            f"     {FETCH_COMMAND} --base-url file:///absolute/path/to/DIR\n"
            "     which cuts and checks them; or\n"
            f"  2. put the four cut files (README.md, section 'Evaluation data') here:\n{cuts}\n"
            f"     or in any folder with that layout and set {DATA_ENV} to it.")


def download(url: str, target: Path, log: Callable[[str], None] = print) -> None:
    """Stream `url` into `target`, logging progress about every quarter of the file."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, \
                open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_mark = 0, 0.25
            while block := response.read(CHUNK):
                out.write(block)
                done += len(block)
                if total and done / total >= next_mark and done < total:
                    log(f"  {done * 100 // total}% of {total / 1e6:.1f} MB")
                    next_mark = (int(done / total * 4) + 1) / 4
    except urllib.error.HTTPError as exc:
        raise AmendError(f"{url}: the server answered HTTP {exc.code} ({exc.reason})") from exc
    log(f"  done, {target.stat().st_size / 1e6:.1f} MB")


def cut_bytes(cut: Cut, raw: bytes) -> bytes:
    """The bytes of one layout file made from its upstream file's bytes."""
    if cut.records is None:
        return raw
    try:
        records = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AmendError(f"{cut.upstream} is not JSON: {exc}") from exc
    if not isinstance(records, list):
        raise AmendError(f"{cut.upstream}: expected a JSON list of records")
    start, stop = cut.records
    return json.dumps(records[start:stop], indent=4, ensure_ascii=cut.ascii).encode("utf-8")


def _present(dest: Path, cut: Cut) -> bool:
    path = dest / _relative(cut)
    return path.is_file() and file_sha256(path) == SHA256[_relative(cut)]


def fetch(dest: Path | None = None, base_url: str = BASE_URL,
          log: Callable[[str], None] = print) -> list[Path]:
    """Download, cut and check the four files into `dest` (default: the fetched copy's folder);
    files already there with the right checksum are kept. Nothing is written unless every
    needed file passes its checksum. Returns the four paths."""
    dest = Path(dest).expanduser() if dest is not None else fetched_data_dir()
    base_url = base_url.rstrip("/")
    todo = [cut for cut in CUTS if not _present(dest, cut)]
    for cut in CUTS:
        if cut not in todo:
            log(f"{_relative(cut)}: already there, checksum matches")
        elif (dest / _relative(cut)).exists():
            log(f"{_relative(cut)}: already there but its checksum differs; fetching it again")
    if todo:
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest))  # same file system: atomic
        try:
            _fetch_into(work, dest, todo, base_url, log)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            if created and not any(dest.iterdir()):
                dest.rmdir()
            raise
        shutil.rmtree(work, ignore_errors=True)
    log(f"data sets ready in {dest}")
    return [dest / _relative(cut) for cut in CUTS]


def _fetch_into(work: Path, dest: Path, todo: list[Cut], base_url: str,
                log: Callable[[str], None]) -> None:
    """Download into `work`, cut and check there, then rename into `dest` (same file system,
    so each rename is atomic)."""
    downloaded: dict[str, Path] = {}
    for upstream in dict.fromkeys(cut.upstream for cut in todo):
        url = f"{base_url}/{upstream}"
        log(f"downloading {url}")
        downloaded[upstream] = work / f"upstream-{len(downloaded)}"
        try:
            download(url, downloaded[upstream], log)
        except BrokenPipeError:
            raise  # our own output was closed, not the network
        except (urllib.error.URLError, ConnectionError, TimeoutError,
                http.client.HTTPException) as exc:  # no route, no name, refused, cut off
            reason = getattr(exc, "reason", None) or exc
            raise OfflineError(offline_help(base_url, dest, str(reason))) from exc
    ready: list[tuple[Path, Path]] = []
    mismatched = []
    for cut in todo:
        relative = _relative(cut)
        staged = work / relative
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(cut_bytes(cut, downloaded[cut.upstream].read_bytes()))
        digest = file_sha256(staged)
        if digest != SHA256[relative]:
            mismatched.append(f"{relative} (from {cut.upstream}): sha256 {digest}, "
                              f"expected {SHA256[relative]}")
        else:
            log(f"{relative}: checksum matches")
            ready.append((staged, dest / relative))
    if mismatched:
        raise AmendError("checksum mismatch, the download was deleted and nothing was written: "
                         + "; ".join(mismatched) + f" (is {base_url} the repository at commit "
                         f"{COMMIT}?)")
    for staged, final in ready:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        log(f"wrote {final}")


def where_report() -> tuple[str, bool]:
    """Every place each file is looked for, marked found or missing, and whether all four
    were found."""
    lines = ["Data files are looked for in this order (a --data path given to a command wins "
             "over all):"]
    complete = True
    for (kind, source), relative in DATA_LAYOUT.items():
        used = find_data_file(kind, source)
        complete &= used is not None
        title = f"{source} {'training split' if kind == 'train' else 'evaluation set'}"
        lines.append(f"\n{title} ({relative}): "
                     + (f"using {used}" if used else f"NOT FOUND; run `{FETCH_COMMAND}`"))
        for label, path in data_candidates(kind, source):
            if path is None:
                lines.append(f"  -       {label}: not set")
            else:
                lines.append(f"  {'found  ' if path.is_file() else 'missing'} {label}: {path}")
    return "\n".join(lines), complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editing.datasets",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, cut and check the four files")
    fetch_parser.add_argument("--dest", type=Path, default=None,
                              help=f"folder to write (default: {fetched_data_dir()})")
    fetch_parser.add_argument("--base-url", default=BASE_URL,
                              help="where data/... is served (default: the repository's raw "
                                   "files at the pinned commit; file:///DIR for a local copy)")
    commands.add_parser("where", help="print where each file is looked for and which is used")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch(args.dest, args.base_url, log=lambda line: print(line, flush=True))
        return 0
    report, complete = where_report()
    print(report)
    return 0 if complete else 1


if __name__ == "__main__":
    run_command(main)

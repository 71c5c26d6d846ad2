"""The public data sets without ../shared: `python -m editing.datasets fetch` against a local
HTTP server serving small fake files, and the lookup order every command uses."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

import assistant.records as records
import editing.datasets as datasets
from errors import AmendError, run_command

REPO = Path(__file__).resolve().parents[1]


def _counterfact(i: int) -> dict:
    return {"case_id": i, "prompt": f"Zürich {i} is located in", "subject": f"Zürich {i}",
            "target_new": "Rome", "ground_truth": "Switzerland",
            "rephrase_prompt": f"Where is Zürich {i}?", "locality_prompt": "Paris is in",
            "locality_ground_truth": "France"}


def _zsre(i: int) -> dict:
    return {"subject": f"Café {i}", "src": f"Where is Café {i}?", "rephrase": f"Café {i} is in?",
            "alt": "Oslo", "answers": ["Bergen"], "loc": "nq question: who?", "loc_ans": "me"}


def _cut(records_: list[dict], ascii_: bool) -> bytes:
    return json.dumps(records_, indent=4, ensure_ascii=ascii_).encode("utf-8")


@pytest.fixture
def upstream(tmp_path) -> dict:
    """A folder laid out like the repository's raw paths, and the cut files expected from it."""
    root = tmp_path / "upstream"
    (root / "data" / "counterfact").mkdir(parents=True)
    (root / "data" / "zsre").mkdir(parents=True)
    edit = [_counterfact(i) for i in range(520)]
    train_bytes = b'[\r\n    {"case_id": 7, "prompt": "A is", "subject": "A",' \
                  b' "target_new": "B"}\r\n]'
    zsre = [_zsre(i) for i in range(1000)]
    (root / "data" / "counterfact" / "counterfact-edit.json").write_text(
        json.dumps(edit, indent=2), encoding="utf-8")
    (root / "data" / "counterfact" / "counterfact-train.json").write_bytes(train_bytes)
    (root / "data" / "zsre" / "zsre_mend_train-1k.json").write_text(
        json.dumps(zsre, ensure_ascii=False), encoding="utf-8")
    cuts = {"counterfact/counterfact-edit-first500.json": _cut(edit[:500], True),
            "zsre/zsre_mend_train-1k-first500.json": _cut(zsre[:500], False),
            "train/counterfact-train.json": train_bytes,
            "train/zsre_mend_train-1k-last500.json": _cut(zsre[500:], False)}
    return {"root": root, "cuts": cuts}


@pytest.fixture
def fake_sums(upstream, monkeypatch) -> dict[str, str]:
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in upstream["cuts"].items()}
    monkeypatch.setattr(datasets, "SHA256", sums)
    return sums


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(upstream):
    """http://127.0.0.1:PORT serving the fake upstream folder from a thread."""
    handler = partial(_QuietHandler, directory=str(upstream["root"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, Path]:
    """The three lookup folders in tmp: env (not set until a test sets it), the fetched copy
    (via AMEND_DATA_DIR) and the one beside the clone."""
    folders = {"env": tmp_path / "env", "app": tmp_path / "app", "beside": tmp_path / "beside"}
    monkeypatch.delenv(records.DATA_ENV, raising=False)
    monkeypatch.setenv("AMEND_DATA_DIR", str(folders["app"]))
    monkeypatch.setattr(records, "BESIDE_CLONE", folders["beside"])
    return {**folders, "fetched": folders["app"] / "datasets"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_main(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda: datasets.main(argv))
    return exit_info.value.code


# -- fetch -----------------------------------------------------------------------------------
def test_fetch_writes_the_four_cut_files_and_checks_them(tmp_path, upstream, fake_sums, server):
    dest = tmp_path / "dest"
    lines: list[str] = []
    paths = datasets.fetch(dest, server, log=lines.append)
    assert [p.relative_to(dest).as_posix() for p in paths] == list(records.DATA_LAYOUT.values())
    for name, data in upstream["cuts"].items():
        assert (dest / name).read_bytes() == data, name
    first = json.loads((dest / "counterfact/counterfact-edit-first500.json").read_text())
    assert [r["case_id"] for r in first] == list(range(500))
    head = json.loads((dest / "zsre/zsre_mend_train-1k-first500.json").read_text("utf-8"))
    tail = json.loads((dest / "train/zsre_mend_train-1k-last500.json").read_text("utf-8"))
    assert [r["subject"] for r in head] == [f"Café {i}" for i in range(500)]
    assert [r["subject"] for r in tail] == [f"Café {i}" for i in range(500, 1000)]
    assert sorted(p.name for p in dest.iterdir()) == ["counterfact", "train", "zsre"]  # no temp
    assert sum(line.startswith("downloading ") for line in lines) == 3  # zsRE downloaded once
    assert "checksum matches" in "\n".join(lines)
    # records parse as the commands read them
    assert records.load_records(dest / "zsre/zsre_mend_train-1k-first500.json", 1)[0].source \
        == "zsre"

    again: list[str] = []
    datasets.fetch(dest, server, log=again.append)
    assert not any(line.startswith("downloading ") for line in again)
    assert sum("already there" in line for line in again) == 4


def test_fetch_replaces_a_damaged_file_only(tmp_path, upstream, fake_sums, server):
    dest = tmp_path / "dest"
    datasets.fetch(dest, server, log=lambda line: None)
    (dest / "train/counterfact-train.json").write_text("[]")
    lines: list[str] = []
    datasets.fetch(dest, server, log=lines.append)
    assert (dest / "train/counterfact-train.json").read_bytes() == \
        upstream["cuts"]["train/counterfact-train.json"]
    assert [line for line in lines if line.startswith("downloading ")] == \
        [f"downloading {server.rstrip('/')}/data/counterfact/counterfact-train.json"]


def test_a_checksum_mismatch_writes_nothing_and_says_so(tmp_path, fake_sums, server,
                                                        monkeypatch, capsys):
    monkeypatch.setitem(datasets.SHA256, "train/zsre_mend_train-1k-last500.json", "0" * 64)
    dest = tmp_path / "dest"
    with pytest.raises(AmendError, match="checksum mismatch") as error:
        datasets.fetch(dest, server, log=lambda line: None)
    assert "train/zsre_mend_train-1k-last500.json" in str(error.value)
    assert not dest.exists()  # not even the files whose checksums matched

    dest.mkdir()
    assert _run_main(["fetch", "--dest", str(dest), "--base-url", server]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checksum mismatch") and "Traceback" not in err
    assert list(dest.iterdir()) == []  # the download and the temporary folder are gone


def test_a_missing_upstream_file_names_the_http_status(tmp_path, upstream, fake_sums, server):
    (upstream["root"] / "data" / "zsre" / "zsre_mend_train-1k.json").unlink()
    with pytest.raises(AmendError, match="HTTP 404"):
        datasets.fetch(tmp_path / "dest", server, log=lambda line: None)
    assert not (tmp_path / "dest").exists()


def test_offline_says_what_to_do_and_exits_2(tmp_path, places, capsys):
    base = f"http://127.0.0.1:{_closed_port()}"
    assert _run_main(["fetch", "--base-url", base]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"downloading {base}/data/")
    assert err.startswith("error: cannot download the data sets")
    for cut in datasets.CUTS:
        assert f"{base}/{cut.upstream}" in err
        assert str(places["fetched"] / records.DATA_LAYOUT[(cut.kind, cut.source)]) in err
    assert "AMEND_SHARED_DATA" in err and "--base-url file://" in err
    assert "Traceback" not in err
    assert not places["fetched"].exists()


def test_offline_from_the_command_line_has_no_traceback(tmp_path):
    base = f"http://127.0.0.1:{_closed_port()}"
    done = subprocess.run([sys.executable, "-m", "editing.datasets", "fetch", "--dest",
                           str(tmp_path / "d"), "--base-url", base], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot download" in done.stderr and "Traceback" not in done.stderr


def test_fetch_from_a_local_folder(tmp_path, upstream, fake_sums):
    """The offline route the message offers: the upstream files copied by hand, file:// URL."""
    dest = tmp_path / "dest"
    datasets.fetch(dest, upstream["root"].as_uri(), log=lambda line: None)
    assert all((dest / name).is_file() for name in upstream["cuts"])


def test_default_destination_is_the_app_data_dir(upstream, fake_sums, server, places):
    datasets.fetch(None, server, log=lambda line: None)
    assert records.find_data_file("eval", "zsre") == \
        places["fetched"] / "zsre/zsre_mend_train-1k-first500.json"


def test_the_shipped_checksums_are_those_of_the_cut_files():
    """The four sha256 in the module are the ones the README states (two) and all are set."""
    assert set(datasets.SHA256) == set(records.DATA_LAYOUT.values())
    assert datasets.SHA256["counterfact/counterfact-edit-first500.json"].startswith("58fafce2")
    assert datasets.SHA256["zsre/zsre_mend_train-1k-first500.json"].startswith("c474bb9c")
    assert all(len(s) == 64 for s in datasets.SHA256.values())


# -- lookup ----------------------------------------------------------------------------------
def _put(folder: Path, kind: str = "eval", source: str = "zsre") -> Path:
    path = folder / records.DATA_LAYOUT[(kind, source)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")
    return path


def test_lookup_order_explicit_env_fetched_beside(places, monkeypatch, tmp_path):
    beside = _put(places["beside"])
    assert records.data_file("eval", "zsre") == beside
    fetched = _put(places["fetched"])
    assert records.data_file("eval", "zsre") == fetched
    monkeypatch.setenv(records.DATA_ENV, str(places["env"]))
    assert records.data_file("eval", "zsre") == fetched  # env set, file not there: next place
    env = _put(places["env"])
    assert records.data_file("eval", "zsre") == env
    explicit = tmp_path / "mine.json"
    assert records.data_file("eval", "zsre", explicit) == explicit
    assert records.resolve_data(str(explicit)) == explicit
    assert records.resolve_data("zsre") == env
    assert records.find_data_file("train", "zsre") is None


def test_nothing_found_names_every_place_and_the_fetch_command(places, monkeypatch):
    with pytest.raises(AmendError) as error:
        records.eval_files()
    message = str(error.value)
    assert "$AMEND_SHARED_DATA: not set" in message
    assert str(places["fetched"]) in message and str(places["beside"]) in message
    assert "python -m editing.datasets fetch" in message and "\n" not in message
    monkeypatch.setenv(records.DATA_ENV, str(places["env"]))
    with pytest.raises(AmendError, match=str(places["env"])):
        records.train_files()
    with pytest.raises(AmendError, match="editing.datasets fetch"):
        records.split_by_subject()


def test_evaluate_uses_the_lookup(places):
    """An evaluation command without the data stops with the lookup's message, before any
    model loads."""
    import editing.evaluate as evaluate

    with pytest.raises(AmendError, match="looked in"):
        evaluate.main(["--method", "memory", "--data", "counterfact"])


def test_where_lists_every_place_and_what_is_used(places, monkeypatch, capsys):
    monkeypatch.setenv(records.DATA_ENV, str(places["env"]))
    used = _put(places["fetched"], "train", "counterfact")
    assert _run_main(["where"]) == 1  # not all four found
    out = capsys.readouterr().out
    assert out.count(f"$AMEND_SHARED_DATA: {places['env']}") == 4
    assert f"using {used}" in out and out.count("NOT FOUND") == 3
    assert f"found   fetched copy: {used}" in out
    assert f"missing beside the clone: {places['beside']}" in out
    for kind, source in records.DATA_LAYOUT:
        _put(places["beside"], kind, source)
    assert _run_main(["where"]) == 0
    assert "NOT FOUND" not in capsys.readouterr().out

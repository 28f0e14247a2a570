"""The app when it listens beyond localhost (issue 15, section 4): logins, who may fine-tune, paths shown.

The fine-tunes here are a stand-in process (``sleep``) started by the app's real runner, so that
ownership and cancelling are checked without training; CPU only, a few seconds in all.
"""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError
from helpers import TINY, app_settings

import demo.cleanup
from demo.access import startup_notes
from demo.paths import shown_path, shown_text
from demo.settings import Settings, parse_args
from demo.ui import build_demo, launch_kwargs
from ssfnet import build_model, save_checkpoint
from ssfnet.data.corrections import save_correction

REPO = Path(__file__).resolve().parents[1]
FINETUNE_API = {"finetune_start", "finetune_status", "finetune_cancel"}
USERS = ("alice:pw-alice", "bob:pw-bob", "eve:pw-eve")  # alice, the first, is the admin


def save_one_correction(folder: Path) -> str:
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 5
    return save_correction(folder, np.full((32, 32, 3), 128, np.uint8), labels, "lip-20", edited_pixels=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A tiny checkpoint (``checkpoints/tiny``) and one saved correction (``corrections``)."""
    root = tmp_path_factory.mktemp("remote")
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    save_checkpoint(model, root / "checkpoints" / "tiny", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    save_one_correction(root / "corrections")
    return root


def fns(blocks: gr.Blocks) -> dict:
    """The app's functions by API name (bound methods of its handlers)."""
    return {f.api_name: f.fn for f in blocks.fns.values() if f.api_name}


def finetune_handlers(settings: Settings, fake_python: Path):
    """The fine-tune handlers of an app of ``settings``, whose fine-tunes run ``fake_python`` instead."""
    handlers = fns(build_demo(settings))["finetune_cancel"].__self__
    handlers.runner.python = str(fake_python)
    return handlers


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """An "interpreter" that ignores its arguments and waits to be stopped (SIGTERM ends it at once)."""
    script = tmp_path / "python-fake"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    return script


def start(handlers, request, minutes=5):
    base = handlers.app.predictors.default()
    return handlers.start(base, minutes, 1e-3, 0.5, 0.2, False, 1.0, request=request)


def stop(handlers) -> None:
    handlers.runner.shutdown(grace_s=1.0)


def user(name: str) -> gr.Request:
    return gr.Request(username=name, session_hash=f"page-of-{name}")


def page(session: str) -> gr.Request:
    return gr.Request(session_hash=session)


# ---------------------------------------------------------------------------------------------
# Logins: --auth, --auth-file, SSFNET_AUTH, SSFNET_AUTH_FILE


def test_auth_from_flags_commas_a_file_and_the_environment(tmp_path, capsys):
    flags = ["--auth", "alice:pw1", "--auth", "bob:pw:2, carol:x"]
    assert parse_args(flags, env={}).credentials() == [("alice", "pw1"), ("bob", "pw:2"), ("carol", "x")]
    assert parse_args([], env={"SSFNET_AUTH": "dave:d1,eve:e1"}).credentials() == [("dave", "d1"), ("eve", "e1")]
    # A flag replaces the variable, as for every setting.
    assert parse_args(["--auth", "a:b"], env={"SSFNET_AUTH": "x:y"}).credentials() == [("a", "b")]
    assert parse_args([], env={}).credentials() == [] and launch_kwargs(Settings())["auth"] is None

    users = tmp_path / "users.txt"
    users.write_text("# who may log in\nalice:pw 1\n\n  bob : pw2  \n#carol:old\n")
    from_file = [("alice", "pw 1"), ("bob", "pw2")]
    assert parse_args(["--auth-file", str(users)], env={}).credentials() == from_file
    assert parse_args([], env={"SSFNET_AUTH_FILE": str(users)}).credentials() == from_file
    both = parse_args(["--auth", "zoe:z"], env={"SSFNET_AUTH_FILE": str(users)})
    assert both.credentials() == [("zoe", "z"), *from_file]  # flags first: zoe is the admin
    assert launch_kwargs(both)["auth"] == [("zoe", "z"), *from_file]

    # Passwords stay out of the settings' repr and of --help (which shows no variable's value).
    assert "pw1" not in repr(parse_args(flags, env={})) and "auth=" not in repr(parse_args(flags, env={}))
    with pytest.raises(SystemExit):
        parse_args(["--help"], env={"SSFNET_AUTH": "alice:topsecret"})
    shown = capsys.readouterr().out
    assert "--auth-file" in shown and "SSFNET_AUTH" in shown and "topsecret" not in shown


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "users.txt"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (["--auth", "topsecret"], {}, "--auth (or SSFNET_AUTH) entry 1: no ':'"),
        (["--auth", "alice:pw,topsecret"], {}, "entry 2: no ':'"),
        (["--auth", ":topsecret"], {}, "entry 1: empty user name"),
        (["--auth", "alice:"], {}, "empty password for user 'alice'"),
        (["--auth", "alice:topsecret,alice:other"], {}, "'alice' is listed twice"),
        ([], {"SSFNET_AUTH": "topsecret"}, "entry 1: no ':'"),
        (["--auth-file", "{missing}"], {}, "cannot read it (No such file or directory)"),
        (["--auth-file", "{file}"], {}, "line 3: no ':'"),
        ([], {"SSFNET_AUTH_FILE": "{file}"}, "line 3: no ':'"),
        (["--auth-file", "{empty}"], {}, "no user:password lines"),
    ],
)
def test_malformed_auth_stops_the_start_with_one_line_and_no_password(tmp_path, capsys, argv, env, expected):
    paths = {
        "{missing}": str(tmp_path / "absent.txt"),
        "{file}": _file(tmp_path, "# users\nalice:pw\ntopsecret\n"),
        "{empty}": str(tmp_path / "comments-only.txt"),
    }
    (tmp_path / "comments-only.txt").write_text("# nobody yet\n\n")
    argv = [paths.get(arg, arg) for arg in argv]
    env = {name: paths.get(value, value) for name, value in env.items()}
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv, env=env)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err and "usage" not in err
    assert "topsecret" not in err


def _run_app_py(monkeypatch, argv: list[str]) -> dict:
    """Run app.py in this process up to launch(), which is replaced by a recorder; returns its kwargs."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    for name in ("stop_on_sigterm", "sweep_stale_temp_dirs", "remove_temp_dirs"):  # other tests' folders stay
        monkeypatch.setattr(demo.cleanup, name, lambda: None)
    for name in ("SSFNET_AUTH", "SSFNET_AUTH_FILE", "SSFNET_HOST", "GRADIO_SERVER_NAME", "SSFNET_SHARE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["app.py", *argv])
    runpy.run_path(str(REPO / "app.py"), run_name="__main__")
    return launched


def test_app_py_passes_the_logins_to_launch_and_warns_without_them(tmp_path, monkeypatch, caplog):
    # No model (an absent checkpoint, an empty folder): the start stays quick.
    folders = ["--checkpoints-dir", str(tmp_path), "--checkpoint", str(tmp_path / "none")]
    folders += ["--corrections-dir", str(tmp_path / "corrections"), "--runs-dir", str(tmp_path / "runs")]
    with caplog.at_level(logging.WARNING):
        launched = _run_app_py(monkeypatch, [*folders, "--host", "0.0.0.0", "--auth", "alice:pw1,bob:pw2"])
    assert launched["auth"] == [("alice", "pw1"), ("bob", "pw2")] and launched["server_name"] == "0.0.0.0"
    assert not [r for r in caplog.records if "without a login" in r.message]
    assert "pw1" not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        launched = _run_app_py(monkeypatch, [*folders, "--host", "0.0.0.0"])
    assert launched["auth"] is None
    (warning,) = [r.message for r in caplog.records if "without a login" in r.message]
    assert "--auth user:password" in warning and "\n" not in warning


def test_startup_notes_say_what_serving_other_machines_means():
    assert parse_args([], env={"SSFNET_FINETUNE_REMOTE": "1"}).finetune_remote is True
    assert parse_args(["--finetune-remote"], env={}).finetune_remote is True
    assert parse_args([], env={}).finetune_remote is False
    assert startup_notes(Settings()) == []  # localhost: nothing to say
    assert startup_notes(Settings(auth=USERS)) == []
    lonely, panel = startup_notes(Settings(host="0.0.0.0"))
    assert "without a login" in lonely and "--auth" in lonely and "--finetune-remote" in panel
    (panel,) = startup_notes(Settings(share=True, auth=USERS))
    assert "public share link" in panel and "fine-tuning panel is off" in panel
    assert startup_notes(Settings(share=True, auth=USERS, finetune_remote=True)) == []
    assert startup_notes(Settings(host="0.0.0.0", auth=USERS, finetune=False)) == []


# ---------------------------------------------------------------------------------------------
# Fine-tuning from other machines


@pytest.mark.parametrize(
    "where, offered",
    [
        ({}, True),  # localhost
        ({"host": "0.0.0.0"}, False),
        ({"share": True, "auth": USERS}, False),
        ({"host": "0.0.0.0", "finetune_remote": True}, True),
        ({"host": "0.0.0.0", "finetune_remote": True, "finetune": False}, False),
    ],
)
def test_the_finetune_panel_is_offered_beyond_localhost_only_when_asked(root, tmp_path, where, offered):
    settings = app_settings(root, runs_dir=tmp_path / "runs", **where)
    blocks = build_demo(settings)
    names = set(fns(blocks))
    assert "compare" in names
    assert (FINETUNE_API <= names) is offered and (FINETUNE_API & names == set()) is not offered
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    assert ("finetune-start" in ids) is offered and ("finetune-cancel" in ids) is offered


def test_a_fine_tune_longer_than_the_server_allows_is_refused(root, tmp_path, fake_python):
    settings = app_settings(root, runs_dir=tmp_path / "runs", finetune_max_minutes=30)
    assert parse_args(["--finetune-max-minutes", "30"], env={}).finetune_max_minutes == 30
    assert parse_args([], env={}).finetune_max_minutes == 60
    handlers = finetune_handlers(settings, fake_python)
    with pytest.raises(gr.Error, match="at most 30 minutes \\(asked: 31\\)"):
        start(handlers, user("bob"), minutes=31)
    assert handlers.runner.job is None and not settings.runs_dir.exists()  # nothing started
    try:
        start(handlers, user("bob"), minutes=30)
        assert handlers.runner.job.running and handlers.runner.job.request.minutes == 30
    finally:
        stop(handlers)


def test_only_who_started_a_fine_tune_or_the_admin_may_cancel_it(root, tmp_path, fake_python):
    settings = app_settings(root, runs_dir=tmp_path / "runs", host="0.0.0.0", finetune_remote=True, auth=USERS)
    handlers = finetune_handlers(settings, fake_python)
    try:
        start(handlers, user("bob"))
        job = handlers.runner.job
        assert job.running and job.owner == "user bob"
        with pytest.raises(gr.Error, match="Only the user who started it or the admin can cancel it"):
            handlers.cancel(user("eve"))
        with pytest.raises(gr.Error, match="started by someone else"):
            handlers.cancel(None)  # nobody known is nobody allowed
        assert job.running and job.cancel_requested is None and not (job.run_dir / "STOP").exists()
        handlers.cancel(user("bob"))
        assert job.process.wait(timeout=10) is not None and job.cancel_requested is not None

        start(handlers, user("eve"))
        second = handlers.runner.job
        assert second is not job and second.owner == "user eve"
        handlers.cancel(user("alice"))  # the admin
        assert second.process.wait(timeout=10) is not None
    finally:
        stop(handlers)


def test_without_logins_the_page_that_started_it_may_cancel_it(root, tmp_path, fake_python):
    settings = app_settings(root, runs_dir=tmp_path / "runs", host="0.0.0.0", finetune_remote=True)
    handlers = finetune_handlers(settings, fake_python)
    try:
        start(handlers, page("a"))
        job = handlers.runner.job
        with pytest.raises(gr.Error, match="Only the page that started it can cancel it"):
            handlers.cancel(page("b"))
        assert job.running
        handlers.cancel(page("a"))
        assert job.process.wait(timeout=10) is not None
    finally:
        stop(handlers)


def test_on_localhost_without_logins_anyone_may_cancel(root, tmp_path, fake_python):
    handlers = finetune_handlers(app_settings(root, runs_dir=tmp_path / "runs"), fake_python)
    try:
        start(handlers, page("a"))
        handlers.cancel(page("b"))  # whoever uses it sits at this machine
        assert handlers.runner.job.process.wait(timeout=10) is not None
    finally:
        stop(handlers)


def test_logged_in_users_through_the_api(root, tmp_path, fake_python, monkeypatch):
    """End to end: launch() gets the logins, Gradio hands the handlers who asks."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    settings = app_settings(root, runs_dir=tmp_path / "runs", auth=USERS)
    blocks = build_demo(settings)
    handlers = fns(blocks)["finetune_cancel"].__self__
    handlers.runner.python = str(fake_python)
    blocks.launch(**launch_kwargs(settings), prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{settings.port}/"
        with pytest.raises(AuthenticationError):  # no login, no app
            Client(url, verbose=False, analytics_enabled=False)
        bob, eve = (Client(url, auth=tuple(u.split(":")), verbose=False, analytics_enabled=False) for u in USERS[1:])
        bob.predict(handlers.app.predictors.default(), 5, 1e-3, 0.5, 0.2, False, 1.0, api_name="/finetune_start")
        job = handlers.runner.job
        assert job.owner == "user bob"
        with pytest.raises(AppError, match="Only the user who started it"):
            eve.predict(api_name="/finetune_cancel")
        assert job.running
        bob.predict(api_name="/finetune_cancel")
        assert job.process.wait(timeout=10) is not None
    finally:
        stop(handlers)
        blocks.close()


# ---------------------------------------------------------------------------------------------
# Paths shown in the page


def test_shown_paths_are_named_after_the_apps_folders(tmp_path):
    cwd = Path.cwd()
    roots = [(cwd / "corrections", "corrections"), (Path("/srv/app/runs"), "runs"), (cwd, ".")]
    assert shown_path(cwd / "corrections" / "trash" / "meta", roots) == "corrections/trash/meta"
    assert shown_path(cwd / "corrections", roots) == "corrections"
    assert shown_path("/srv/app/runs/finetune-1/console.log", roots) == "runs/finetune-1/console.log"
    assert shown_path(cwd / "checkpoints" / "tiny", roots) == "checkpoints/tiny"
    assert shown_path("/etc/secret/place/x.json", roots) == "x.json"  # outside every folder: its name only
    text = (
        f"$ python --out /srv/app/runs/finetune-1 --data lip:/mnt/srv/app/runs/x\n"
        f'File "{cwd}/train/finetune.py", line 3: {cwd}/corrections. {cwd}/corrections-old'
    )
    assert shown_text(text, roots) == (
        "$ python --out runs/finetune-1 --data lip:/mnt/srv/app/runs/x\n"
        'File "train/finetune.py", line 3: corrections. corrections-old'
    )


def test_the_page_shows_relative_paths(root, tmp_path, tmp_path_factory, fake_python, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ and the stand-in interpreter inside it; the rest outside
    corrections = tmp_path_factory.mktemp("elsewhere") / "corrections"  # this test deletes its correction
    record = save_one_correction(corrections)
    settings = app_settings(root, runs_dir=tmp_path / "runs", corrections_dir=corrections)
    blocks = build_demo(settings)
    handlers = fns(blocks)
    finetune = handlers["finetune_cancel"].__self__
    finetune.runner.python = str(fake_python)
    ui = finetune.app.ui
    try:
        start(finetune, page("a"))
        shown = handlers["finetune_status"](None, None, None, None)
        log = shown[ui.finetune_log]
        assert str(tmp_path) not in log and str(root) not in log and str(corrections) not in log
        assert log.startswith("$ python-fake -m train.finetune --corrections corrections --checkpoints-dir checkpoints")
        assert "--out runs/finetune-" in log and "--base checkpoints/tiny" in log
    finally:
        stop(finetune)
    # A library error with an absolute path, and the trash folder of a deleted correction.
    missing = record[:-1] + ("0" if record[-1] != "0" else "1")
    with pytest.raises(gr.Error) as refused:
        handlers["trash"](missing, False)
    assert f"no correction {missing} in corrections" in str(refused.value)
    assert str(corrections) not in str(refused.value)
    message = handlers["trash"](record, False)[ui.message]
    assert "to `corrections/trash`" in message and str(corrections) not in message

"""Installing chunkrecorder the way a bot owner does: Red's own Downloader and loader.

``[p]repo add`` clones a local git clone of this repository's committed HEAD, Red's
repo discovery must offer ``chunkrecorder`` and nothing else, Red validates and copies
the cog folder into its install path, and ``[p]load`` imports that copy (not the
working tree) and runs its commands. Requirements: Red would ``pip install -t`` each
one from PyPI; offline, pip itself checks that every requirement in info.json parses
and is satisfied by the bot's environment, and an AST scan checks that every package
the cog imports is either Red's or listed. ``CHUNKRECORDER_NETWORK_TESTS=1`` runs the
literal ``[p]cog install`` with its real pip step against PyPI.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from packaging.requirements import Requirement

from tests.support.red import ADMIN_ID, OWNER_ID, RedWorld

ROOT = Path(__file__).resolve().parents[2]
COG = ROOT / "chunkrecorder"
REPO_NAME = "chunkrec"


def _info() -> dict:
    return json.loads((COG / "info.json").read_text())


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The committed HEAD only: what `[p]repo add` of this repository would fetch."""
    target = tmp_path / "upstream"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, capture_output=True)
    return target


@pytest.fixture
def fresh_modules() -> Iterator[None]:
    """Import the installed copy as if in a new process, then put the tests' modules back."""
    saved = {k: v for k, v in sys.modules.items() if k == "chunkrecorder" or k.startswith("chunkrecorder.")}
    for k in saved:
        del sys.modules[k]
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "chunkrecorder" or k.startswith("chunkrecorder.")]:
            del sys.modules[k]
        sys.modules.update(saved)


async def _downloader(world: RedWorld):
    from redbot.cogs.downloader import setup as downloader_setup

    # Imported directly: bot.load_extension of Red's *core* cogs trips over pytest's
    # assertion rewriting of the redbot package (see shared notes); this is the same
    # setup() that `[p]load downloader` runs.
    await downloader_setup(world.bot)
    cog = world.bot.get_cog("Downloader")
    await asyncio.wait_for(cog._ready.wait(), 30)
    return cog


# --------------------------------------------------------------------------- manifests
def test_manifests_are_what_reds_downloader_reads() -> None:
    from redbot.cogs.downloader.info_schemas import INSTALLABLE_SCHEMA, REPO_SCHEMA

    repo_info = json.loads((ROOT / "info.json").read_text())
    cog_info = _info()
    for key in REPO_SCHEMA:
        assert isinstance(repo_info.get(key), (str, list)) and repo_info[key], f"repo info.json lacks {key}"
    for key in ("author", "short", "description", "install_msg", "end_user_data_statement", "requirements",
                "min_bot_version", "min_python_version", "tags", "type"):
        assert cog_info.get(key), f"chunkrecorder/info.json lacks {key}"
    assert set(cog_info) - {"name"} <= set(INSTALLABLE_SCHEMA) | set(REPO_SCHEMA)
    assert cog_info["type"] == "COG" and cog_info["disabled"] is False and cog_info["hidden"] is False
    for folder in ("harness", "tests"):
        info = json.loads((ROOT / folder / "info.json").read_text())
        assert info["disabled"] is True and info["hidden"] is True, folder


def test_install_message_says_what_the_cog_costs_and_what_it_hooks() -> None:
    """What a bot owner reads after `[p]cog install`, before loading anything."""
    from chunkrecorder.core.settings import GuildSettings
    from chunkrecorder.pipeline.transcoder import default_workers

    msg = _info()["install_msg"]
    assert len(msg) < 2000, "Red sends it as one message"
    assert "one per CPU core" in msg and default_workers() == (os.cpu_count() or 1)
    assert "50 CPU-seconds" in msg  # README: 52.7 s per speaker-hour, pipeline and Opus decode
    mib_per_hour = GuildSettings().bitrate / 8 * 3600 / 2**20  # CBR MP3 at the default bitrate
    assert f"about {mib_per_hour:.1f} MiB of MP3 (at the default {GuildSettings().bitrate // 1000} kb/s)" in msg
    assert "discord.py 2.7.1's private voice state" in msg
    assert "[p]slash enable record" in msg


def test_max_bot_version_is_the_red_the_tests_run_on() -> None:
    """The bridge reads discord.py's private voice state: only a tested Red may install it.
    Testing with a newer Red fails here until info.json is raised to it on purpose."""
    import discord
    import redbot

    info = _info()
    assert info["max_bot_version"] == redbot.__version__
    assert discord.__version__ == "2.7.1" and "2.7.1" in info["install_msg"]


def test_end_user_data_statement_matches_the_cog() -> None:
    import chunkrecorder

    statement = chunkrecorder.__red_end_user_data_statement__
    assert statement == _info()["end_user_data_statement"]
    for words in ("audio", "user ids", "opt out", "mixed", "cannot be separated"):
        assert words in statement, words


def test_requirements_cover_every_import_and_leave_discord_to_red() -> None:
    """Every third-party package the cog imports is Red's own or listed in info.json."""
    reqs = [Requirement(r) for r in _info()["requirements"]]
    names = {metadata.metadata(r.name)["Name"].lower() for r in reqs}
    assert not names & {"discord.py", "discord-py", "red-discordbot"}, "Red provides discord.py and itself"
    pynacl = next(r for r in reqs if r.name.lower() == "pynacl")
    assert not pynacl.specifier.contains("1.6.0"), "discord.py 2.7 needs PyNaCl below 1.6"
    assert {"pynacl", "davey", "aiosqlite", "av", "numpy"} <= names

    red_provides = {"red-discordbot", "discord.py"} | {
        Requirement(r).name.lower() for r in metadata.requires("Red-DiscordBot") or () if "extra ==" not in r
    }
    dist_of = metadata.packages_distributions()
    imported: dict[str, str] = {}
    for path in COG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    imported[top] = str(path.relative_to(ROOT))
    assert "harness" not in imported and "tests" not in imported, "the cog must stand alone"
    for top, where in imported.items():
        dists = {d.lower() for d in dist_of.get(top, [])}
        assert dists, f"{where} imports {top}, which no installed distribution provides"
        assert dists & (names | red_provides), f"{where} imports {top} ({dists}) but info.json does not require it"


def test_pip_finds_every_requirement_satisfied_offline() -> None:
    """pip resolves the manifest's requirements against the bot's environment, no index."""
    reqs = _info()["requirements"]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--disable-pip-version-check", *reqs],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Would install" not in proc.stdout, proc.stdout


# --------------------------------------------------------------------------- Red's Downloader
async def test_repo_add_offers_only_the_cog_then_it_installs_loads_and_answers(
    red_world: RedWorld, clone: Path, fresh_modules: None
) -> None:
    world = red_world
    downloader = await _downloader(world)

    replies = await world.invoke_and_answer(OWNER_ID, f"!repo add {REPO_NAME} {clone}", "I agree")
    assert any("successfully added" in m.text for m in replies), [m.text for m in replies]
    repo = downloader._repo_manager.get_repo(REPO_NAME)
    assert repo.commit == _git("rev-parse", "HEAD", cwd=clone).strip()
    assert [c.name for c in repo.available_cogs] == ["chunkrecorder"]
    assert repo.available_libraries == ()  # `cog install` would install every shared library
    others = [m for m in repo.available_modules if m.name != "chunkrecorder"]
    assert all(m.disabled and m.hidden for m in others), [(m.name, m.disabled) for m in others]

    listing = await world.invoke(OWNER_ID, f"!cog list {REPO_NAME}")
    shown = "\n".join(m.text for m in listing)
    assert "chunkrecorder" in shown and "harness" not in shown and "tests" not in shown

    # What `[p]cog install` does after its pip step: Red's own checks (bot and Python
    # versions), then copying the folder and recording it as installed.
    cogs, message = await downloader._filter_incorrect_cogs_by_names(repo, {"chunkrecorder"})
    assert [c.name for c in cogs] == ["chunkrecorder"], message
    assert list(cogs[0].requirements) == _info()["requirements"]
    installed, failed = await downloader._install_cogs(cogs)
    assert not failed
    await downloader._save_to_installed(installed)
    install_dir = await downloader.cog_install_path()
    copied = install_dir / "chunkrecorder"
    assert (copied / "info.json").is_file() and (copied / "cog.py").is_file()
    assert not (install_dir / "harness").exists() and not (install_dir / "tests").exists()

    await _load_installed_copy_and_use_it(world, copied)


async def _load_installed_copy_and_use_it(world: RedWorld, copied: Path) -> None:
    already = set(sys.modules)
    replies = await world.invoke(OWNER_ID, "!load chunkrecorder")
    assert any("Loaded `chunkrecorder`" in m.text for m in replies), [m.text for m in replies]
    assert world.bot.get_cog("ChunkRecorder") is not None
    new = [k for k in set(sys.modules) - already if k == "chunkrecorder" or k.startswith("chunkrecorder.")]
    assert "chunkrecorder.cog" in new
    for name in new:
        file = getattr(sys.modules[name], "__file__", None)
        assert file is not None and Path(file).is_relative_to(copied), f"{name} came from {file}"
    assert not any(k == "harness" or k.startswith("harness.") for k in set(sys.modules) - already)

    shown = await world.invoke(ADMIN_ID, "!recordingset")
    assert "Recording settings" in shown[0].text and "10 s per chunk" in shown[0].text
    status = await world.invoke(ADMIN_ID, "!record status")
    assert status[0].text == "Nothing is being recorded in this server."
    database = (world.data_path / "cogs" / "ChunkRecorder" / "chunkrecorder.sqlite3")
    assert database.is_file(), "the store lives in the cog's Red data folder"

    replies = await world.invoke(OWNER_ID, "!unload chunkrecorder")
    assert any("was unloaded: `chunkrecorder`" in m.text for m in replies), [m.text for m in replies]
    assert world.bot.get_cog("ChunkRecorder") is None


async def test_load_refuses_with_one_sentence_when_a_requirement_is_missing(
    red_world: RedWorld, monkeypatch: pytest.MonkeyPatch, fresh_modules: None
) -> None:
    """As after a failed pip step: `import nacl` fails. No traceback, no half-loaded cog."""
    world = red_world
    await world.bot._cog_mgr.add_path(ROOT)  # Red's `[p]addpath` of the working tree
    monkeypatch.setitem(sys.modules, "nacl", None)  # what Python does for a missing package
    replies = await world.invoke(OWNER_ID, "!load chunkrecorder")
    text = "\n".join(m.text for m in replies)
    assert "PyNaCl>=1.5,<1.6" in text and "is missing" in text, text
    assert "Traceback" not in text and "Error in command" not in text
    assert world.bot.get_cog("ChunkRecorder") is None


def test_missing_opus_is_one_sentence() -> None:
    from chunkrecorder.audio.opus import OpusUnavailable
    from chunkrecorder.core.requirements import missing_requirement

    def no_opus() -> None:
        raise OpusUnavailable()

    problem = missing_requirement(opus=no_opus)
    assert problem is not None and problem.startswith("chunkrecorder cannot load: No Opus codec")
    assert problem.count("\n") == 0
    assert missing_requirement(opus=lambda: None) is None


# --------------------------------------------------------------------------- with PyPI
@pytest.mark.skipif(os.environ.get("CHUNKRECORDER_NETWORK_TESTS") != "1",
                    reason="downloads the requirements from PyPI; set CHUNKRECORDER_NETWORK_TESTS=1")
async def test_cog_install_command_with_its_real_pip_step(
    red_world: RedWorld, clone: Path, fresh_modules: None
) -> None:
    world = red_world
    downloader = await _downloader(world)
    await world.invoke_and_answer(OWNER_ID, f"!repo add {REPO_NAME} {clone}", "I agree")
    replies = await asyncio.wait_for(world.invoke(OWNER_ID, f"!cog install {REPO_NAME} chunkrecorder"), 900)
    text = "\n".join(m.text for m in replies)
    assert "Successfully installed the cog: `chunkrecorder`" in text, text
    assert "Thanks for installing chunkrecorder" in text  # the install_msg
    lib = downloader.LIB_PATH
    for top in ("nacl", "davey", "aiosqlite", "av", "numpy"):
        assert list(lib.glob(f"{top}*")), f"{top} not installed into {lib}"
    assert not (lib / "discord").exists(), "a second discord.py must not be pulled in"
    await _load_installed_copy_and_use_it(world, (await downloader.cog_install_path()) / "chunkrecorder")


async def test_load_refuses_a_database_from_a_newer_version(red_world: RedWorld, fresh_modules: None) -> None:
    """A downgrade: one sentence, the database untouched, no half-loaded cog."""
    import sqlite3

    world = red_world
    folder = world.data_path / "cogs" / "ChunkRecorder"
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "chunkrecorder.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    await world.bot._cog_mgr.add_path(ROOT)
    replies = await world.invoke(OWNER_ID, "!load chunkrecorder")
    text = "\n".join(m.text for m in replies)
    assert "chunkrecorder cannot open its recordings" in text and "version 99, newer than this cog" in text, text
    assert world.bot.get_cog("ChunkRecorder") is None
    with sqlite3.connect(folder / "chunkrecorder.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99


async def test_load_refuses_a_damaged_database_in_one_sentence(red_world: RedWorld, fresh_modules: None) -> None:
    """A damaged database file: the load says what to do in one sentence (not a raw
    ``DatabaseError``), leaves no half-loaded cog, and the file is left for rescue."""
    world = red_world
    folder = world.data_path / "cogs" / "ChunkRecorder"
    folder.mkdir(parents=True)
    (folder / "chunkrecorder.sqlite3").write_bytes(b"not a database" * 200)
    await world.bot._cog_mgr.add_path(ROOT)
    replies = await world.invoke(OWNER_ID, "!load chunkrecorder")
    text = "\n".join(m.text for m in replies)
    assert "chunkrecorder cannot open its recordings" in text and "is damaged" in text, text
    assert "DatabaseError" not in text and "Traceback" not in text, text
    assert world.bot.get_cog("ChunkRecorder") is None
    assert (folder / "chunkrecorder.sqlite3").read_bytes() == b"not a database" * 200


async def test_load_refuses_a_data_folder_another_process_records_in(red_world: RedWorld, fresh_modules: None) -> None:
    """A second bot on the same data folder: the load names the holder in one sentence and
    takes nothing of the meeting the other process is recording."""
    import sqlite3

    from tests.pipeline.test_folder_lock import Holder

    world = red_world
    folder = world.data_path / "cogs" / "ChunkRecorder"
    holder = Holder(folder)
    try:
        await world.bot._cog_mgr.add_path(ROOT)
        replies = await world.invoke(OWNER_ID, "!load chunkrecorder")
        text = "\n".join(m.text for m in replies)
        assert "chunkrecorder cannot open its recordings" in text, text
        assert f"is in use by process {holder.pid} on " in text, text
        assert world.bot.get_cog("ChunkRecorder") is None
        with sqlite3.connect(folder / "chunkrecorder.sqlite3") as db:
            (status,) = db.execute("SELECT status FROM meetings WHERE id = ?", (holder.meeting_id,)).fetchone()
        assert status == "ACTIVE"
    finally:
        holder.kill()

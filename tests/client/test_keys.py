"""Client key lifecycle: generate/load (plain and awaited), key_dir, permissions, rotation with
in-flight requests, dispose."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import urllib.parse

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization

import nomyo_native as nomyo
from nomyo_native import _keys as nomyo_keys

USER = [{"role": "user", "content": "hello"}]
PASSWORD = "correct horse battery"


def mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_keys_plain_call(tmp_path):
    client = nomyo.SecureCompletionClient(key_size=2048)
    result = client.generate_keys(save_to_file=True, key_dir=str(tmp_path), password=PASSWORD)
    assert client.private_key is not None and client.private_key.bits == 2048
    assert client.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert result.result() is None
    assert mode(tmp_path / "private_key.pem") == 0o600
    assert mode(tmp_path / "public_key.pem") == 0o644
    # The file is ours in pyca/cryptography too (the reference client's loader).
    loaded = serialization.load_pem_private_key(
        (tmp_path / "private_key.pem").read_bytes(), PASSWORD.encode()
    )
    assert (
        loaded.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        .strip()
        == client.public_key_pem.strip()
    )


async def test_generate_and_load_keys_awaited(tmp_path):
    client = nomyo.SecureCompletionClient(key_size=2048)
    assert await client.generate_keys(save_to_file=True, key_dir=str(tmp_path)) is None
    first = client.client_key_fingerprint
    other = nomyo.SecureCompletionClient(key_size=2048)
    await other.load_keys(str(tmp_path / "private_key.pem"), str(tmp_path / "public_key.pem"))
    assert other.client_key_fingerprint == first
    third = nomyo.SecureCompletionClient()
    await third.aload_keys(tmp_path / "private_key.pem")
    assert third.client_key_fingerprint == first


def test_load_keys_password_from_environment(tmp_path, monkeypatch):
    writer = nomyo.SecureCompletionClient(key_size=2048)
    writer.generate_keys(save_to_file=True, key_dir=str(tmp_path), password=PASSWORD)
    reader = nomyo.SecureCompletionClient()
    with pytest.raises(nomyo.KeyLoadError) as info:
        reader.load_keys(str(tmp_path / "private_key.pem"))
    assert isinstance(info.value, ValueError)
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    reader.load_keys(str(tmp_path / "private_key.pem"))
    assert reader.client_key_fingerprint == writer.client_key_fingerprint


def test_wrong_password_and_mismatched_public_key_are_clear_errors(tmp_path):
    first = nomyo.SecureCompletionClient(key_size=2048)
    first.generate_keys(save_to_file=True, key_dir=str(tmp_path / "a"), password=PASSWORD)
    second = nomyo.SecureCompletionClient(key_size=2048)
    second.generate_keys(save_to_file=True, key_dir=str(tmp_path / "b"))
    reader = nomyo.SecureCompletionClient()
    with pytest.raises(nomyo.KeyLoadError, match="private key"):
        reader.load_keys(str(tmp_path / "a" / "private_key.pem"), password="wrong password!")
    with pytest.raises(nomyo.KeyLoadError, match="does not belong"):
        reader.load_keys(
            str(tmp_path / "b" / "private_key.pem"), str(tmp_path / "a" / "public_key.pem")
        )
    assert reader.private_key is None, "a failed load installs nothing"
    with pytest.raises(FileNotFoundError):
        reader.load_keys(str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o660])
def test_group_or_other_readable_private_key_is_refused_with_the_fix(tmp_path, bad_mode):
    writer = nomyo.SecureCompletionClient(key_size=2048)
    writer.generate_keys(save_to_file=True, key_dir=str(tmp_path))
    private = tmp_path / "private_key.pem"
    os.chmod(private, bad_mode)
    reader = nomyo.SecureCompletionClient()
    with pytest.raises(nomyo.SecurityError) as info:
        reader.load_keys(str(private))
    assert isinstance(info.value, nomyo.InsecureKeyFileError)
    assert f"chmod 600 {private}" in str(info.value)


async def test_key_dir_generates_once_then_loads(make_chat, peer, tmp_path, monkeypatch):
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    key_dir = tmp_path / "client_keys"
    async with make_chat(key_dir=str(key_dir)) as chat:
        await chat.create(model="m", messages=USER)
        first = chat.client.client_key_fingerprint
    assert mode(key_dir / "private_key.pem") == 0o600
    assert b"ENCRYPTED" in (key_dir / "private_key.pem").read_bytes()
    async with make_chat(key_dir=str(key_dir)) as chat:
        await chat.create(model="m", messages=USER)
        assert chat.client.client_key_fingerprint == first
    sent = {urllib.parse.unquote(r.headers["x-public-key"]) for r in peer.received}
    assert len(sent) == 1


async def test_key_dir_with_a_bad_password_is_not_overwritten(make_chat, tmp_path):
    key_dir = tmp_path / "keys"
    async with make_chat(key_dir=str(key_dir), key_password=PASSWORD) as chat:
        await chat.create(model="m", messages=USER)
    before = (key_dir / "private_key.pem").read_bytes()
    async with make_chat(key_dir=str(key_dir), key_password="not the password") as chat:
        with pytest.raises(nomyo.KeyLoadError):
            await chat.create(model="m", messages=USER)
    assert (key_dir / "private_key.pem").read_bytes() == before


async def test_key_dir_with_loose_permissions_is_refused(make_chat, tmp_path):
    key_dir = tmp_path / "keys"
    async with make_chat(key_dir=str(key_dir)) as chat:
        await chat.create(model="m", messages=USER)
    os.chmod(key_dir / "private_key.pem", 0o644)
    async with make_chat(key_dir=str(key_dir)) as chat:
        with pytest.raises(nomyo.InsecureKeyFileError, match="chmod 600"):
            await chat.create(model="m", messages=USER)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rotation_after_the_interval_and_in_flight_requests_keep_the_old_key(make_chat, peer):
    clock = Clock()
    release_first = asyncio.Event()
    first_arrived = asyncio.Event()

    gate = {"armed": True}

    async def gated(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST" and gate["armed"]:
            gate["armed"] = False
            first_arrived.set()
            await release_first.wait()
        return peer.handle(request)

    chat = make_chat(key_rotation_interval=3600, clock=clock, transport=httpx2.MockTransport(gated))
    await chat.client.agenerate_keys()
    old = chat.client.private_key
    old_pem = old.public_key_pem
    in_flight = asyncio.create_task(
        chat.create(model="m", messages=[{"role": "user", "content": "A"}])
    )
    await first_arrived.wait()

    clock.now += 3600
    # The first request is parked inside the server: the rotation must not break it.
    reply_b = await chat.create(model="m", messages=[{"role": "user", "content": "B"}])
    new = chat.client.private_key
    assert new is not old and not old.wiped, "the leased old key survives the rotation"

    release_first.set()
    reply_a = await in_flight
    assert reply_a["choices"][0]["message"]["content"] == "echo: A"
    assert reply_b["choices"][0]["message"]["content"] == "echo: B"
    assert old.wiped, "the retired key is wiped once its last request finished"
    assert not new.wiped
    # The server saw B (new key) before A (old key).
    keys = [urllib.parse.unquote(r.headers["x-public-key"]) for r in peer.received]
    assert keys == [new.public_key_pem, old_pem]
    await chat.aclose()


async def test_rotation_interval_zero_disables(make_chat, peer):
    clock = Clock()
    async with make_chat(key_rotation_interval=0, clock=clock) as chat:
        await chat.create(model="m", messages=USER)
        clock.now += 10 * 365 * 86400
        await chat.create(model="m", messages=USER)
    assert peer.received[0].headers["x-public-key"] == peer.received[1].headers["x-public-key"]


async def test_rotated_keys_are_saved_to_the_rotation_dir(make_chat, peer, tmp_path):
    clock = Clock()
    rotation_dir = tmp_path / "rotated"
    async with make_chat(
        key_rotation_interval=60,
        clock=clock,
        key_rotation_dir=str(rotation_dir),
        key_rotation_password=PASSWORD,
    ) as chat:
        await chat.create(model="m", messages=USER)
        assert not rotation_dir.exists(), "the first key stays in memory"
        clock.now += 61
        await chat.create(model="m", messages=USER)
        fingerprint = chat.client.client_key_fingerprint
    reader = nomyo.SecureCompletionClient()
    reader.load_keys(str(rotation_dir / "private_key.pem"), password=PASSWORD)
    assert reader.client_key_fingerprint == fingerprint
    assert mode(rotation_dir / "private_key.pem") == 0o600


async def test_dispose_wipes_the_keys_and_ends_the_client(make_chat, peer):
    chat = make_chat()
    await chat.create(model="m", messages=USER)
    keypair = chat.client.private_key
    assert not keypair.wiped
    chat.dispose()
    assert keypair.wiped
    assert chat.client.private_key is None
    with pytest.raises(nomyo.ClientClosedError):
        await chat.create(model="m", messages=USER)


async def test_a_client_and_its_sibling_generate_one_key_pair(make_chat, monkeypatch):
    # Siblings (other base URLs) share the key ring; first use on both at once must not make
    # (and, with key_dir, save) two different pairs.
    generated = []
    original = nomyo_keys.generate_keypair

    def counting(bits):
        generated.append(bits)
        return original(bits)

    monkeypatch.setattr(nomyo_keys, "generate_keypair", counting)
    chat = make_chat()
    sibling = chat.client.clone_for("https://other.test")
    await asyncio.gather(chat.client._ensure_keys(), sibling._ensure_keys())
    assert len(generated) == 1
    assert chat.client.private_key is sibling.private_key


async def test_a_sibling_cannot_revive_a_disposed_key_ring(make_chat, peer):
    chat = make_chat()
    await chat.create(model="m", messages=USER)
    sibling = chat.client.clone_for("https://other.test")
    chat.client.dispose()
    with pytest.raises(nomyo.ClientClosedError):
        await sibling._ensure_keys()
    assert sibling.private_key is None, "no fresh pair was installed in the disposed ring"


@pytest.mark.slow
async def test_default_key_is_4096_bits_in_memory_only(make_chat, peer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    async with make_chat(key_size=4096) as chat:
        await chat.create(model="m", messages=USER)
        assert chat.client.private_key.bits == 4096
    default = nomyo.SecureChatCompletion()
    assert default.client.key_size == 4096
    assert list(tmp_path.iterdir()) == [], "nothing written anywhere"


def test_an_empty_password_means_not_given_when_loading_too(tmp_path, monkeypatch):
    # key_dir loading, rotation and load_keys all treat "" as "no password given" and fall back
    # to NOMYO_KEY_PASSWORD; load_keys alone used to pass "" on to the core.
    writer = nomyo.SecureCompletionClient(key_size=2048)
    writer.generate_keys(save_to_file=True, key_dir=str(tmp_path), password=PASSWORD)
    monkeypatch.setenv("NOMYO_KEY_PASSWORD", PASSWORD)
    reader = nomyo.SecureCompletionClient()
    reader.load_keys(str(tmp_path / "private_key.pem"), password="")
    assert reader.client_key_fingerprint == writer.client_key_fingerprint


def _files(key_dir) -> dict[str, bytes]:
    return {name: (key_dir / name).read_bytes() for name in ("private_key.pem", "public_key.pem")}


@pytest.mark.parametrize("existing", [True, False], ids=["loaded", "first-saved"])
async def test_key_dir_pair_is_rotated_in_memory_only(make_chat, peer, tmp_path, existing):
    # Issue 10 item 7: the user's key_dir files are never overwritten by a rotation, whether
    # the pair was loaded from them or generated and saved there on first use.
    key_dir = tmp_path / "keys"
    if existing:
        writer = nomyo.SecureCompletionClient(key_size=2048)
        writer.generate_keys(save_to_file=True, key_dir=str(key_dir), password=PASSWORD)
    clock = Clock()
    async with make_chat(
        key_dir=str(key_dir), key_password=PASSWORD, key_rotation_interval=60, clock=clock
    ) as chat:
        await chat.create(model="m", messages=USER)
        before = _files(key_dir)
        first = chat.client.client_key_fingerprint
        clock.now += 61
        await chat.create(model="m", messages=USER)
        rotated = chat.client.client_key_fingerprint
    assert rotated != first, "the pair was rotated"
    assert peer.received[0].headers["x-public-key"] != peer.received[1].headers["x-public-key"]
    assert _files(key_dir) == before, "key_dir was not touched"
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]
    # The next start loads the user's pair again.
    again = make_chat(key_dir=str(key_dir), key_password=PASSWORD)
    await again.client._ensure_keys()
    assert again.client.client_key_fingerprint == first


async def test_key_dir_rotation_writes_only_to_the_rotation_dir(make_chat, peer, tmp_path):
    key_dir, rotation_dir = tmp_path / "keys", tmp_path / "rotated"
    clock = Clock()
    async with make_chat(
        key_dir=str(key_dir),
        key_password=PASSWORD,
        key_rotation_interval=60,
        key_rotation_dir=str(rotation_dir),
        clock=clock,
    ) as chat:
        await chat.create(model="m", messages=USER)
        before = _files(key_dir)
        clock.now += 61
        await chat.create(model="m", messages=USER)
        rotated = chat.client.client_key_fingerprint
    assert _files(key_dir) == before
    reader = nomyo.SecureCompletionClient()
    reader.load_keys(str(rotation_dir / "private_key.pem"), password=PASSWORD)
    assert reader.client_key_fingerprint == rotated


@pytest.mark.parametrize("spelling", ["same", "trailing-slash", "dot-segments", "symlink"])
def test_key_rotation_dir_that_is_key_dir_is_refused(tmp_path, spelling):
    # Issue 10 item 7 at depth: however key_rotation_dir names key_dir, a rotation would
    # overwrite the user's pair there; the combination is refused before anything is made.
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    rotation_dir = {
        "same": str(key_dir),
        "trailing-slash": str(key_dir) + "/",
        "dot-segments": str(tmp_path / "keys" / ".." / "keys" / "."),
        "symlink": str(tmp_path / "link"),
    }[spelling]
    if spelling == "symlink":
        os.symlink(key_dir, rotation_dir)
    with pytest.raises(ValueError, match="key_rotation_dir is key_dir"):
        nomyo.SecureChatCompletion(
            base_url="https://peer.test", key_dir=str(key_dir), key_rotation_dir=rotation_dir
        )
    assert list(key_dir.iterdir()) == []


async def test_key_rotation_dir_never_overwrites_a_pair_saved_by_generate_keys(
    make_chat, peer, tmp_path
):
    # generate_keys(save_to_file=True, key_dir=D) keeps the user's pair in D too: a rotation
    # with key_rotation_dir=D rotates in memory and leaves D's files alone.
    saved_dir = tmp_path / "mine"
    clock = Clock()
    async with make_chat(
        key_rotation_interval=60, clock=clock, key_rotation_dir=str(saved_dir)
    ) as chat:
        chat.client.generate_keys(save_to_file=True, key_dir=str(saved_dir), password=PASSWORD)
        first = chat.client.client_key_fingerprint
        before = _files(saved_dir)
        await chat.create(model="m", messages=USER)
        clock.now += 61
        await chat.create(model="m", messages=USER)
        assert chat.client.client_key_fingerprint != first, "the pair was rotated"
    assert _files(saved_dir) == before


async def test_key_dir_first_save_never_overwrites_a_pair_saved_meanwhile(
    make_chat, peer, tmp_path, monkeypatch
):
    # Two clients (two processes) starting at once on an empty key_dir: the second to finish
    # generating must not replace the pair the first saved; it uses that pair instead.
    key_dir = tmp_path / "keys"
    other = nomyo.SecureCompletionClient(key_size=2048)
    original = nomyo_keys.generate_keypair
    theirs: list[str] = []

    def generate_while_another_saves(bits):
        keypair = original(bits)
        if not theirs:  # the other process saves its pair while this one generates
            pair = original(other.key_size)
            nomyo_keys.save_keypair(pair, key_dir, PASSWORD)
            theirs.append(pair.fingerprint)
        return keypair

    monkeypatch.setattr(nomyo_keys, "generate_keypair", generate_while_another_saves)
    before = None
    async with make_chat(key_dir=str(key_dir), key_password=PASSWORD) as chat:
        await chat.client._ensure_keys()
        before = _files(key_dir)
        assert chat.client.client_key_fingerprint == theirs[0]
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]
    reader = nomyo.SecureCompletionClient()
    reader.load_keys(str(key_dir / "private_key.pem"), str(key_dir / "public_key.pem"), PASSWORD)
    assert reader.client_key_fingerprint == theirs[0]
    assert _files(key_dir) == before


def test_key_dir_first_save_by_many_processes_keeps_one_pair(tmp_path):
    key_dir = tmp_path / "keys"
    script = (
        "import asyncio, sys, nomyo_native as nomyo\n"
        "c = nomyo.SecureCompletionClient(key_size=2048, key_dir=sys.argv[1], "
        "key_password='pw-for-test')\n"
        "asyncio.run(c._ensure_keys())\n"
        "print(c.client_key_fingerprint)\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(key_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    fingerprints = set()
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        fingerprints.add(out.strip())
    assert len(fingerprints) == 1, "every process uses the one pair in key_dir"
    reader = nomyo.SecureCompletionClient()
    reader.load_keys(
        str(key_dir / "private_key.pem"), str(key_dir / "public_key.pem"), "pw-for-test"
    )
    assert {reader.client_key_fingerprint} == fingerprints
    assert sorted(p.name for p in key_dir.iterdir()) == ["private_key.pem", "public_key.pem"]

"""Key directories written by nomyo 0.2.9 load in nomyo-native, and the other way round (the
reference's side run by its own venv's interpreter, tests/reference/driver.py)."""

from __future__ import annotations

import os
import stat

import pytest
from tests.reference import run_reference

import nomyo_native

pytestmark = pytest.mark.reference

PASSWORD = "interop-password"


def reference_generates(key_dir, password: str | None = None) -> str:
    """The reference writes a 2048-bit key directory (key size is not the point here)."""
    job = {"key_dir": str(key_dir), "password": password, "key_size": 2048}
    return run_reference("generate-keys", job)["public_key_pem"]


@pytest.mark.parametrize("password", [None, PASSWORD])
async def test_reference_key_dir_loads_in_ours(tmp_path, password):
    ref_public_key_pem = reference_generates(tmp_path, password)
    ours = nomyo_native.SecureCompletionClient()
    await ours.load_keys(
        str(tmp_path / "private_key.pem"), str(tmp_path / "public_key.pem"), password=password
    )
    assert ours.public_key_pem.strip() == ref_public_key_pem.strip()
    assert ours.private_key.bits == 2048


@pytest.mark.parametrize("password", [None, PASSWORD])
def test_our_key_dir_loads_in_the_reference(tmp_path, password):
    ours = nomyo_native.SecureCompletionClient(key_size=2048)
    ours.generate_keys(save_to_file=True, key_dir=str(tmp_path), password=password)
    assert stat.S_IMODE(os.stat(tmp_path / "private_key.pem").st_mode) == 0o600
    ref = run_reference(
        "load-keys",
        {
            "private": str(tmp_path / "private_key.pem"),
            "public": str(tmp_path / "public_key.pem"),
            "password": password,
        },
    )
    assert ref["public_key_pem"].strip() == ours.public_key_pem.strip()
    assert ref["key_size"] == 2048


async def test_key_dir_option_shares_keys_with_the_reference(tmp_path, make_chat, peer):
    """SecureChatCompletion(key_dir=...) of either client adopts the other's saved keys."""
    ref_public_key_pem = reference_generates(tmp_path)
    async with make_chat(key_dir=str(tmp_path)) as chat:
        await chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert chat.client.public_key_pem.strip() == ref_public_key_pem.strip()

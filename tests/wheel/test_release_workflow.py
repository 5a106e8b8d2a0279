"""The release workflow (which cannot run here) agrees with the project it releases.

`make lint` validates its schema and security (check-jsonschema, zizmor); these tests check
what those cannot know: the markers it deselects exist, every wheel it builds is inspected,
it tests the abi3 floor, and it publishes only from a tag with trusted publishing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = (REPO / ".github/workflows/release.yml").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _jobs() -> dict[str, str]:
    """Job name -> its text (jobs are the two-space-indented keys under `jobs:`)."""
    body = WORKFLOW.split("\njobs:\n", 1)[1]
    parts = re.split(r"^  ([a-z][a-z0-9-]*):\n", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_deselected_markers_are_registered():
    registered = {m.split(":", 1)[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    used = set(re.findall(r"not ([a-z_]+)", " ".join(re.findall(r"markers: (.+)", WORKFLOW))))
    used |= set(re.findall(r'-m "([^"$]+)"', WORKFLOW)[0].replace("not ", "").split(" and "))
    assert used and used <= registered, used - registered


def test_every_build_job_inspects_what_it_built():
    builders = {name: text for name, text in _jobs().items() if "maturin " in text}
    assert set(builders) == {"wheels", "musllinux", "sdist"}
    for name, text in builders.items():
        assert "scripts/inspect_wheel.py dist --expect 1" in text, name


def test_tests_run_on_the_abi3_floor_and_a_newer_python():
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for job in ("test", "test-musllinux"):
        versions = re.findall(r'python: \["([0-9.]+)", "([0-9.]+)"\]', _jobs()[job])
        assert versions and versions[0][0] == floor, job
        assert tuple(map(int, versions[0][1].split("."))) > tuple(map(int, floor.split(".")))
    assert f'python-version: "{floor}"' in _jobs()["wheels"]


def test_publishing_is_tag_only_trusted_and_attested():
    jobs = _jobs()
    publish = jobs["publish"]
    assert "startsWith(github.ref, 'refs/tags/v')" in publish
    assert "id-token: write" in publish
    assert "attestations: true" in publish
    assert "password" not in publish and "secrets." not in WORKFLOW
    # Nothing else may mint OIDC tokens.
    assert [name for name, text in jobs.items() if "id-token" in text] == ["publish"]
    needs = re.search(r"needs: \[(.+)\]", publish)
    assert needs is not None
    assert set(needs.group(1).split(", ")) == {
        "wheels",
        "musllinux",
        "sdist",
        "test",
        "test-musllinux",
    }


def test_every_action_is_pinned_to_a_commit():
    uses = re.findall(r"uses: (\S+)", WORKFLOW)
    assert uses
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def test_the_workflow_says_which_windows_wheel_ships():
    assert "The Windows wheel that ships is this MSVC one" in WORKFLOW
    assert "MinGW" in WORKFLOW

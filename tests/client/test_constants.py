"""One constants module: the library's and the CLI's defaults and choices are the values in
``nomyo_native._constants``, so changing one there changes every entry point."""

from __future__ import annotations

import argparse
import inspect

import nomyo_native
from nomyo_native import _constants
from nomyo_native.cli import build_parser
from nomyo_native.client import SecureCompletionClient


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError(f"no subcommand {name}")


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    for action in parser._actions:
        if flag in action.option_strings:
            return action
    raise AssertionError(f"no option {flag}")


def test_chat_api_defaults_are_the_constants():
    params = inspect.signature(nomyo_native.SecureChatCompletion.__init__).parameters
    assert params["base_url"].default == _constants.DEFAULT_ROUTER_URL
    assert params["max_retries"].default == _constants.DEFAULT_MAX_RETRIES
    client_params = inspect.signature(SecureCompletionClient.__init__).parameters
    assert client_params["router_url"].default == _constants.DEFAULT_ROUTER_URL
    assert client_params["max_retries"].default == _constants.DEFAULT_MAX_RETRIES
    assert client_params["timeout"].default == _constants.DEFAULT_TIMEOUT


def test_cli_chat_defaults_and_choices_are_the_constants():
    chat = _subparser(build_parser(), "chat")
    assert _option(chat, "--base-url").default == _constants.DEFAULT_ROUTER_URL
    assert _option(chat, "--timeout").default == _constants.DEFAULT_TIMEOUT
    assert _option(chat, "--max-retries").default == _constants.DEFAULT_MAX_RETRIES
    assert tuple(_option(chat, "--tier").choices) == _constants.SECURITY_TIERS
    assert tuple(_option(chat, "--attestation").choices) == _constants.ATTESTATION_POLICIES


def test_attestation_policies_have_one_definition():
    from nomyo_native import attestation

    assert attestation.ATTESTATION_POLICIES is _constants.ATTESTATION_POLICIES
    assert _constants.SECURITY_TIERS == ("standard", "high", "maximum")
    assert _constants.ATTESTATION_POLICIES == ("off", "auto", "bound", "require")

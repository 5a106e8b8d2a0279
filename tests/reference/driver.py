"""The reference client's side of the tests that compare nomyo-native with nomyo 0.2.9.

Run by the reference venv's interpreter (``.cache/reference-venv/bin/python``): nomyo 0.2.9 pins
idna==3.14 and httpx2 needs idna>=3.18, so the two clients never share a venv.

usage: python driver.py COMMAND < input.json     (one JSON document out on stdout)

Commands: ``surface`` (public names, the given methods' signatures, exception classes),
``paths`` (every attribute path of the package), ``memory-info`` (the keys of
get_memory_protection_info), ``generate-keys`` / ``load-keys`` (key directories), ``chat``
(calls on one SecureChatCompletion, each outcome a response or the exception's description) and
``send-secure-request`` (the low-level call against a router whose key is given). Only the
standard library and nomyo are imported.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import inspect
import json
import pkgutil
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import nomyo
import nomyo.nomyo
import nomyo.SecureCompletionClient

ERROR_NAMES = (
    "AuthenticationError",
    "InvalidRequestError",
    "ForbiddenError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
)


def kind(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return "module"
    if inspect.isclass(value):
        return "class"
    if callable(value):
        return "callable"
    return "value"


def parameters(function: Callable[..., Any]) -> list[dict[str, Any]]:
    """Each parameter's name, kind and default (its repr: defaults here are plain literals)."""
    return [
        {"name": p.name, "kind": p.kind.name, "default": repr(p.default)}
        for p in inspect.signature(function).parameters.values()
    ]


def surface(methods: dict[str, list[str]]) -> dict[str, Any]:
    """``methods``: the methods whose signatures to give, by class name."""
    classes = {
        "SecureChatCompletion": nomyo.nomyo.SecureChatCompletion,
        "SecureCompletionClient": nomyo.SecureCompletionClient.SecureCompletionClient,
    }
    return {
        "version": nomyo.__version__,
        "all": list(nomyo.__all__),
        "signatures": {
            cls: {method: parameters(getattr(classes[cls], method)) for method in names}
            for cls, names in methods.items()
        },
        "client_module_errors": [
            name
            for name in dir(nomyo.SecureCompletionClient)
            if name.endswith("Error") and not name.startswith("_")
        ],
        "status_codes": {name: getattr(nomyo, name)("msg").status_code for name in ERROR_NAMES},
    }


def is_nomyos(value: Any) -> bool:
    """Defined by the nomyo package, not a stdlib, typing or third-party import."""
    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[0] == "nomyo"
    return (getattr(value, "__module__", None) or "").split(".")[0] == "nomyo"


def paths(_: Any) -> dict[str, Any]:
    modules = {"nomyo": nomyo}
    for info in pkgutil.walk_packages(nomyo.__path__, "nomyo."):
        modules[info.name] = importlib.import_module(info.name)
    found = {"nomyo.__version__": "value"}
    for module_name, module in modules.items():
        found[module_name] = "module"
        for name, value in vars(module).items():
            if name.startswith("__"):
                continue
            path = module_name + "." + name
            if is_nomyos(value) or (not name.startswith("_") and kind(value) == "value"):
                found[path] = kind(value)
            if inspect.isclass(value) and is_nomyos(value):
                if issubclass(value, enum.Enum):
                    for member in value.__members__:
                        found[path + "." + member] = "value"
                for attr in vars(value):
                    if not attr.startswith("_"):
                        found[path + "." + attr] = kind(getattr(value, attr))
    return {"version": nomyo.__version__, "paths": found}


def memory_info(_: Any) -> dict[str, Any]:
    return {"keys": sorted(nomyo.get_memory_protection_info())}


def key_client(key_size: int) -> Any:
    client = nomyo.SecureChatCompletion(base_url="https://unused.test").client
    client.key_size = key_size
    return client


def generate_keys(job: dict[str, Any]) -> dict[str, Any]:
    client = key_client(job.get("key_size", 2048))
    client.generate_keys(save_to_file=True, key_dir=job["key_dir"], password=job.get("password"))
    return {"public_key_pem": client.public_key_pem}


def load_keys(job: dict[str, Any]) -> dict[str, Any]:
    client = key_client(2048)
    client.load_keys(job["private"], job.get("public"), password=job.get("password"))
    return {"public_key_pem": client.public_key_pem, "key_size": client.private_key.key_size}


def describe(exc: BaseException) -> dict[str, Any]:
    """What the tests check of a raised exception; its classes by name, most derived first."""
    return {
        "type": type(exc).__name__,
        "mro": [cls.__name__ for cls in type(exc).__mro__],
        "status_code": getattr(exc, "status_code", None),
        "error_details": getattr(exc, "error_details", None),
        "message": str(exc),
    }


async def outcome(call: Any) -> dict[str, Any]:
    try:
        return {"response": await call}
    except Exception as exc:  # every outcome goes back to the test, which judges it
        return {"error": describe(exc)}


def chat(job: dict[str, Any]) -> list[dict[str, Any]]:
    """``job``: base_url, options (SecureChatCompletion keywords), key_size, calls (each a
    method name and its keywords), all on one client, in order."""
    base_url = job["base_url"]
    options = {"max_retries": 0, **job.get("options", {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its HTTP warning
        client = nomyo.SecureChatCompletion(
            base_url=base_url, allow_http=base_url.startswith("http:"), **options
        )
    client.client.key_size = job.get("key_size", 2048)  # keygen cost is not the point here

    async def run() -> list[dict[str, Any]]:
        return [
            await outcome(getattr(client, call["method"])(**call["kwargs"]))
            for call in job["calls"]
        ]

    return asyncio.run(run())


def send_secure_request(job: dict[str, Any]) -> dict[str, Any]:
    """The low-level request to ``router_url``, the server key given instead of fetched."""
    from nomyo.SecureCompletionClient import SecureCompletionClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its HTTP warning
        client = SecureCompletionClient(router_url=job["router_url"], allow_http=True)
    client.key_size = 2048
    client.generate_keys()

    async def fetch_key() -> str:
        return job["server_key_pem"]

    client.fetch_server_public_key = fetch_key
    return asyncio.run(outcome(client.send_secure_request(job["payload"], job["payload_id"])))


COMMANDS: dict[str, Callable[[Any], Any]] = {
    "surface": surface,
    "paths": paths,
    "memory-info": memory_info,
    "generate-keys": generate_keys,
    "load-keys": load_keys,
    "chat": chat,
    "send-secure-request": send_secure_request,
}


def main() -> None:
    (command,) = sys.argv[1:]
    text = sys.stdin.read()
    result = COMMANDS[command](json.loads(text) if text.strip() else None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

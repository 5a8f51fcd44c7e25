"""A vLLM general plugin: lets vLLM's CPU kernel overrides coexist with Quart.

Without Triton's CPU backend, vLLM's CPU worker swaps some Triton kernels for C++ ones at
start-up (``register_triton_kernel_overrides``) and, to rebind every holder of the old
kernels, scans the namespace of every module in ``sys.modules`` with
``hasattr(value, "__dict__")``. Quart and Flask keep context-local proxies
(``current_app``, ``request``, ...) at module level, and reading any attribute of one
outside an application context raises ``RuntimeError``, which ``hasattr`` does not
catch: the worker dies with "Working outside of application context". It happens in our
own process (engine core in-thread) and in vLLM's spawned workers too, since a spawned
process re-imports the main module, and ours imports Quart.

:func:`register` (entry point ``vllm.general_plugins`` → ``trio_responses``, which vLLM
runs in each of its processes before that scan, and which the bridge also calls itself)
gives the scanning module a view of ``sys`` whose ``modules`` leaves out modules holding
such objects. Those modules hold no vLLM kernels, so nothing that needed rebinding is
missed; nothing else in the process sees the view.
"""

from __future__ import annotations

import sys
from types import GetSetDescriptorType, MappingProxyType, ModuleType
from typing import Any

# What a class's __dict__ attribute normally is: a slot descriptor, or a class namespace.
_STANDARD = (GetSetDescriptorType, MappingProxyType, dict)


class _ScanSafeSys:
    """``sys`` as seen by vLLM's kernel dispatcher: ``modules`` is a filtered copy."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)

    @property
    def modules(self) -> dict[str, ModuleType]:
        return {name: module for name, module in list(sys.modules.items()) if _scannable(module)}


def _scannable(module: ModuleType) -> bool:
    namespace = getattr(module, "__dict__", None)
    if not namespace:
        return True
    for value in list(namespace.values()):
        if not _unusual(type(value)):
            continue
        try:
            hasattr(value, "__dict__")
        except Exception:
            return False
    return True


def _unusual(klass: type) -> bool:
    """Whether reading ``__dict__`` may run code of the class (as the proxies' does).

    Others are not tried: touching them could fire side effects of their own, such as
    deprecation warnings.
    """
    for base in klass.__mro__:
        if "__dict__" in vars(base):
            return not isinstance(vars(base)["__dict__"], _STANDARD)
    # No __dict__ slot: the lookup falls through to __getattr__ / __getattribute__.
    return any(
        "__getattr__" in vars(base) or "__getattribute__" in vars(base)
        for base in klass.__mro__[:-1]
    )


def register() -> None:
    """Install the filtered view; idempotent, and a no-op if vLLM changed shape."""
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:
        return
    module: Any = dispatcher
    # Only where the module still reads the real sys (the shape this fix is for).
    if getattr(module, "sys", None) is sys:
        module.sys = _ScanSafeSys()

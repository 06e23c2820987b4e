"""A CLI command's work on a store of the configured database: one event loop, the store migrated first
and closed after, a storage failure a click error that names the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import click

from margin.storage.protocols import StorageError


class Closable(Protocol):
    async def close(self) -> None: ...


class MigratedStore(Closable, Protocol):
    async def migrate(self) -> list[str]: ...


S = TypeVar("S", bound=MigratedStore)
T = TypeVar("T")


def run_on_store(store: S, work: Callable[[S], Awaitable[T]], *, name: str, also_close: Sequence[Closable] = ()) -> T:
    """`work(store)` after migrating the store; then the store and `also_close` (what was opened with
    it) are closed. A StorageError becomes "the `name` failed: ..."."""

    async def go() -> T:
        try:
            await store.migrate()
            return await work(store)
        finally:
            await store.close()
            for other in also_close:
                await other.close()

    try:
        return asyncio.run(go())
    except StorageError as exc:
        raise click.ClickException(f"the {name} failed: {exc}") from None

"""Conversations: what each ``/v1/conversations`` endpoint does, and a response's turn.

:class:`ConversationService` serves the Conversations API over the store: it gives ids
(``conv_…``; items ``msg_…``, ``fc_…`` … by type — a client's own item ids are not kept),
enforces the limits (items per conversation, bytes per item a client adds) and
ownership (another key's conversation is not found).

A response created with ``conversation`` takes a :class:`ConversationTurn`
(:meth:`ConversationService.begin_turn`): it waits for the conversation's lock, reads
the items as its history, checks its input against them, and holds the lock until its
run has saved its final object and appended its input and output items (one store
transaction, before the terminal event is published), then lets go. So responses on one
conversation run one after another, in the order they came, and each reads the turns
before it: nothing interleaves, nothing is lost. An items append takes the same lock
for its one write. A request that waits longer than ``conversation_lock_timeout`` gets
``409 conversation_locked``, which the openai SDK retries.

Only ``completed`` and ``incomplete`` responses append (:data:`APPENDED_STATUSES`): an
incomplete one was cut short (``max_output_tokens``, a tool-output timeout) but the
client was shown its output, and the next turn ("go on") needs it; a failed or
cancelled one appends nothing, so a retry starts from the same conversation.

The locks are this process's: two servers on one store (during a rollout) do not wait
for each other; their appends stay atomic, but may interleave.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import Conflict, InvalidRequest, NotFound
from ..protocol.conversations_api import (
    conversation_object,
    deleted_conversation,
    item_bytes,
    item_list,
    present_item,
)
from ..protocol.ids import IdFactory, item_id
from ..store.base import (
    ConversationAppend,
    ConversationFull,
    Item,
    ResponseStore,
    StoredConversation,
    UnknownItem,
)
from .service_config import ServiceConfig

# The response statuses whose turn is appended to the conversation (see the module doc).
APPENDED_STATUSES = frozenset({"completed", "incomplete"})


@dataclass(frozen=True, slots=True)
class ConversationLockStatistics:
    # Conversations a response (or an append) holds, and requests waiting for one.
    held: int
    waiting: int


class _Lock:
    def __init__(self) -> None:
        # A semaphore, not a trio.Lock: a response's lock is taken by the request that
        # creates it and let go by its run, another task. Trio's semaphore wakes its
        # waiters in order (FIFO).
        self.semaphore = trio.Semaphore(1)
        self.users = 0


class ConversationLocks:
    """One lock per conversation, held while a response on it runs. ``max_wait``: the
    longest a request waits for one, in seconds (0: no limit)."""

    def __init__(self, max_wait: float = 0.0) -> None:
        self.max_wait = max_wait
        self._locks: dict[str, _Lock] = {}

    async def acquire(self, conversation_id: str) -> Callable[[], None]:
        """Wait for the conversation, then return the function that lets it go (once;
        later calls do nothing). Raises 409 ``conversation_locked`` past ``max_wait``."""
        timeout = self.max_wait
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = _Lock()
        lock.users += 1
        try:
            with trio.move_on_after(timeout if timeout > 0 else math.inf):
                await lock.semaphore.acquire()
                return self._releaser(conversation_id, lock)
        except BaseException:
            self._leave(conversation_id, lock)
            raise
        self._leave(conversation_id, lock)
        raise Conflict(
            f"Another response is running on conversation '{conversation_id}'; this "
            f"request waited {timeout:g} s for it (--conversation-lock-timeout-seconds). "
            "Retry when it has finished.", param="conversation", code="conversation_locked",
            # Waiting is what fixes this one: let the SDK retry, after a moment.
            headers={"x-should-retry": "true", "retry-after": "1", "retry-after-ms": "1000"})

    def _releaser(self, conversation_id: str, lock: _Lock) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                lock.semaphore.release()
                self._leave(conversation_id, lock)

        return release

    def _leave(self, conversation_id: str, lock: _Lock) -> None:
        lock.users -= 1
        if lock.users == 0:
            del self._locks[conversation_id]

    def statistics(self) -> ConversationLockStatistics:
        held = sum(1 for lock in self._locks.values() if lock.semaphore.value == 0)
        waiting = sum(lock.users for lock in self._locks.values()) - held
        return ConversationLockStatistics(held=held, waiting=waiting)


class ConversationTurn:
    """A response's hold on its conversation, from its history read to its append."""

    def __init__(self, *, conversation_id: str, owner: str, history: Sequence[Item],
                 input_items: Sequence[Item], store: ResponseStore,
                 release: Callable[[], None]) -> None:
        self.conversation_id = conversation_id
        self.owner = owner
        # The conversation's items when the response began, oldest first.
        self.history = tuple(history)
        # The response's input items, with their ids: the start of what it appends.
        self.input_items = tuple(input_items)
        self._store = store
        self._release = release

    def append_for(self, response: Mapping[str, Any]) -> ConversationAppend | None:
        """What the finished ``response`` appends: its input then its output items, or
        nothing when it did not end ``completed`` or ``incomplete``."""
        if response["status"] not in APPENDED_STATUSES:
            return None
        return ConversationAppend(conversation_id=self.conversation_id, owner=self.owner,
                                  items=(*self.input_items, *response["output"]))

    async def append(self, response: Mapping[str, Any]) -> None:
        """Append the turn on its own (a response that is not stored; a stored one
        appends in the same write as its final object, ``ResponseStore.finish``)."""
        append = self.append_for(response)
        if append is not None:
            await self._store.append_items(append)

    def end(self) -> None:
        """Let the conversation go (the next response on it starts). Idempotent."""
        self._release()


class ConversationService:
    def __init__(self, *, config: ServiceConfig, store: ResponseStore, ids: IdFactory,
                 clock: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.ids = ids
        self.clock = clock
        self.locks = ConversationLocks(config.conversation_lock_timeout)

    # -- checks ----------------------------------------------------------------------

    def _check_sizes(self, items: Sequence[Item], root: str) -> None:
        limit = self.config.max_conversation_item_bytes
        for index, item in enumerate(items):
            size = item_bytes(item) if limit else 0
            if size > limit:
                raise InvalidRequest(
                    f"Invalid '{root}[{index}]': the item is {size} bytes; conversation "
                    f"items are at most {limit} bytes on this server "
                    "(--max-conversation-item-bytes).",
                    param=f"{root}[{index}]", code="item_too_large")

    def _full(self, conversation_id: str, count: int, adding: int, param: str = "items"
              ) -> InvalidRequest:
        limit = self.config.max_conversation_items
        return InvalidRequest(
            f"Conversation '{conversation_id}' is full: it holds {count} items, and adding "
            f"{adding} would pass this server's limit of {limit} items per conversation "
            "(--max-conversation-items). Delete items or start a new conversation.",
            param=param, code="conversation_full")

    def _with_ids(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{**item, "id": item_id(self.ids, item["type"])} for item in items]

    async def _conversation(self, conversation_id: str, owner: str,
                            param: str = "conversation_id") -> StoredConversation:
        conversation = await self.store.get_conversation(conversation_id, owner)
        if conversation is None:
            raise self._not_found(conversation_id, param)
        return conversation

    @staticmethod
    def _not_found(conversation_id: str, param: str) -> NotFound:
        return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param,
                        code="conversation_not_found" if param == "conversation" else None)

    # -- the endpoints ---------------------------------------------------------------

    async def create(self, items: Sequence[Mapping[str, Any]], metadata: Mapping[str, str],
                     owner: str) -> dict[str, Any]:
        self._check_sizes(items, "items")
        limit = self.config.max_conversation_items
        conversation = StoredConversation(id=self.ids("conv"), owner=owner,
                                          created_at=int(self.clock()), metadata=metadata)
        if limit and len(items) > limit:
            raise self._full(conversation.id, 0, len(items))
        await self.store.create_conversation(conversation, self._with_ids(items))
        return conversation_object(conversation.id, conversation.created_at, metadata)

    async def retrieve(self, conversation_id: str, owner: str) -> dict[str, Any]:
        conversation = await self._conversation(conversation_id, owner)
        return conversation_object(conversation.id, conversation.created_at,
                                   conversation.metadata)

    async def update(self, conversation_id: str, owner: str, metadata: Mapping[str, str]
                     ) -> dict[str, Any]:
        conversation = await self.store.update_conversation(conversation_id, owner, metadata)
        if conversation is None:
            raise self._not_found(conversation_id, "conversation_id")
        return conversation_object(conversation.id, conversation.created_at,
                                   conversation.metadata)

    async def delete(self, conversation_id: str, owner: str) -> dict[str, Any]:
        """Its items go with it; the responses that used it stay."""
        if not await self.store.delete_conversation(conversation_id, owner):
            raise self._not_found(conversation_id, "conversation_id")
        return deleted_conversation(conversation_id)

    async def add_items(self, conversation_id: str, owner: str,
                        items: Sequence[Mapping[str, Any]], include: Sequence[str]
                        ) -> dict[str, Any]:
        self._check_sizes(items, "items")
        await self._conversation(conversation_id, owner)
        added = self._with_ids(items)
        release = await self.locks.acquire(conversation_id)
        try:
            appended = await self.store.append_items(
                ConversationAppend(conversation_id, owner, tuple(added)),
                max_items=self.config.max_conversation_items)
        except ConversationFull as exc:
            raise self._full(conversation_id, exc.count, len(added)) from None
        finally:
            release()
        if not appended:  # deleted while this request waited
            raise self._not_found(conversation_id, "conversation_id")
        return item_list(added, has_more=False, include=include)

    async def list_items(self, conversation_id: str, owner: str, *, after: str | None,
                         limit: int, order: str, include: Sequence[str]) -> dict[str, Any]:
        try:
            page = await self.store.list_items(conversation_id, owner, after=after,
                                               limit=limit, descending=order == "desc")
        except UnknownItem:
            raise InvalidRequest(f"No item with id '{after}' in conversation "
                                 f"'{conversation_id}'.", param="after") from None
        if page is None:
            raise self._not_found(conversation_id, "conversation_id")
        return item_list(page.items, has_more=page.has_more, include=include)

    async def retrieve_item(self, conversation_id: str, owner: str, item_id: str,
                            include: Sequence[str]) -> dict[str, Any]:
        await self._conversation(conversation_id, owner)
        item = await self.store.get_item(conversation_id, owner, item_id)
        if item is None:
            raise NotFound(f"Item with id '{item_id}' not found in conversation "
                           f"'{conversation_id}'.", param="item_id")
        return present_item(item, include)

    async def delete_item(self, conversation_id: str, owner: str, item_id: str
                          ) -> dict[str, Any]:
        """Answers the conversation, as OpenAI does."""
        conversation = await self._conversation(conversation_id, owner)
        if not await self.store.delete_item(conversation_id, owner, item_id):
            raise NotFound(f"Item with id '{item_id}' not found in conversation "
                           f"'{conversation_id}'.", param="item_id")
        return conversation_object(conversation.id, conversation.created_at,
                                   conversation.metadata)

    # -- responses on a conversation -------------------------------------------------

    async def history(self, conversation_id: str, owner: str) -> list[Item]:
        """The conversation's items, oldest first (no lock: a read, as for a count)."""
        items = await self.store.conversation_items(conversation_id, owner)
        if items is None:
            raise self._not_found(conversation_id, "conversation")
        return items

    async def begin_turn(self, conversation_id: str, owner: str,
                         input_items: Sequence[Item]) -> ConversationTurn:
        """Wait for the conversation (409 past the timeout), read its items, check the
        response's input against them and the limits (4xx); the caller hands the turn
        to the response's run, which ends it."""
        self._check_sizes(input_items, "input")
        await self._conversation(conversation_id, owner, "conversation")  # 404 before waiting
        release = await self.locks.acquire(conversation_id)
        try:
            history = await self.history(conversation_id, owner)  # gone while it waited: 404
            self._check_turn_input(conversation_id, history, input_items)
        except BaseException:
            release()
            raise
        return ConversationTurn(conversation_id=conversation_id, owner=owner,
                                history=history, input_items=input_items, store=self.store,
                                release=release)

    def _check_turn_input(self, conversation_id: str, history: Sequence[Item],
                          input_items: Sequence[Item]) -> None:
        known = {item.get("id") for item in history}
        for index, item in enumerate(input_items):
            if item["id"] in known:
                raise InvalidRequest(
                    f"Invalid 'input[{index}].id': item '{item['id']}' is already in "
                    f"conversation '{conversation_id}' (or twice in this input). Send only "
                    "the new items: the conversation holds the earlier ones.",
                    param=f"input[{index}].id", code="duplicate_item_id")
            known.add(item["id"])
        limit = self.config.max_conversation_items
        # Room for the input and at least one output item; the output of a response that
        # started is always appended, so a conversation may pass the limit by that much.
        if limit and len(history) + len(input_items) >= limit:
            raise self._full(conversation_id, len(history), len(input_items) + 1,
                             "conversation")

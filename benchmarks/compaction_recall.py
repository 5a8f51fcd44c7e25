"""Compaction by hand with a real model: does a compacted history still let the model
answer about the conversation, and how much prompt does it save?

Against a running server (``scripts/serve``, the default model), with the strict SDK:

1. short conversations on one topic (``TOPICS``), each question asked after the whole
   history and after its compaction item alone;
2. a stateless conversation of ``--turns`` turns, each user message stating one fact and
   the model answering, the whole history sent every turn (``store: false``);
3. each question of ``QUESTIONS`` asked after the full history (its input tokens and the
   answer), then ``client.responses.compact`` of that history (its time, tokens and
   summary), then each question again after the compaction item alone;
4. a create with ``context_management`` under a threshold below the history's size, to
   see the compaction item and its event in a stream.

Prints figures; asserts nothing. ``python benchmarks/compaction_recall.py --base-url
http://127.0.0.1:8000/v1``
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import openai

FACTS = [
    "My name is Ada Lovelace.",
    "I live in the city of Lisbon.",
    "My cat is called Pixel.",
    "My favourite colour is green.",
    "I work as a baker.",
    "My brother is called Tom.",
]
QUESTIONS = [("What is my name?", "Ada"), ("In which city do I live?", "Lisbon"),
             ("What is my cat called?", "Pixel"), ("What is my job?", "baker")]
# Short conversations on one topic, and a question that needs it: (user turns, question,
# the word a right answer has).
TOPICS = [
    (["Let's talk about France.", "Tell me about its food."],
     "What is the capital of the country we are talking about?", "paris"),
    (["Let's talk about Italy.", "Tell me about its history."],
     "What is the capital of the country we are talking about?", "rome"),
    (["I am planning a trip to Japan.", "What should I pack?"],
     "Which country am I travelling to?", "japan"),
    (["My name is Ada."], "What is my name?", "ada"),
]


def ask(client: openai.OpenAI, model: str, history: list[Any], question: str
        ) -> tuple[str, int]:
    response = client.responses.create(
        model=model, store=False, temperature=0, max_output_tokens=40,
        input=[*history, {"role": "user", "content": question}])
    assert response.usage is not None
    return response.output_text.strip(), response.usage.input_tokens


def topics(client: openai.OpenAI, model: str) -> list[dict[str, Any]]:
    """Each topic conversation (the model answering each turn), its question asked after
    the whole history and after its compaction item alone."""
    rows = []
    for users, question, expected in TOPICS:
        history: list[Any] = []
        for text in users:
            history.append({"role": "user", "content": text})
            reply = client.responses.create(model=model, store=False, temperature=0,
                                            max_output_tokens=80, input=history)
            history += [item.model_dump(exclude_none=True) for item in reply.output]
        full_answer, full_tokens = ask(client, model, history, question)
        compacted = client.responses.compact(model=model, input=history)
        item = compacted.output[0].model_dump(exclude_none=True)
        short_answer, short_tokens = ask(client, model, [item], question)
        rows.append({"question": question, "full_tokens": full_tokens,
                     "compacted_tokens": short_tokens,
                     "summary_tokens": compacted.usage.output_tokens,
                     "full_right": expected in full_answer.lower(),
                     "compacted_right": expected in short_answer.lower(),
                     "full_answer": full_answer, "compacted_answer": short_answer})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--turns", type=int, default=len(FACTS))
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", timeout=600,
                           _strict_response_validation=True)
    figures: dict[str, Any] = {"topics": topics(client, args.model)}
    history: list[Any] = []
    for fact in (FACTS * 4)[: args.turns]:
        history.append({"role": "user", "content": f"{fact} Please remember it."})
        reply = client.responses.create(model=args.model, store=False, temperature=0,
                                        max_output_tokens=60, input=history)
        history += [item.model_dump(exclude_none=True) for item in reply.output]
    figures.update({"turns": args.turns, "history_items": len(history)})
    full = {question: ask(client, args.model, history, question) for question, _ in QUESTIONS}
    started = time.perf_counter()
    compacted = client.responses.compact(model=args.model, input=history)
    figures["compact_seconds"] = round(time.perf_counter() - started, 2)
    figures["compact_usage"] = compacted.usage.model_dump()
    item = compacted.output[0].model_dump(exclude_none=True)
    after = {question: ask(client, args.model, [item], question) for question, _ in QUESTIONS}
    rows = []
    for question, expected in QUESTIONS:
        (full_answer, full_tokens), (short_answer, short_tokens) = full[question], after[question]
        rows.append({"question": question, "full_tokens": full_tokens,
                     "compacted_tokens": short_tokens,
                     "full_right": expected.lower() in full_answer.lower(),
                     "compacted_right": expected.lower() in short_answer.lower(),
                     "full_answer": full_answer, "compacted_answer": short_answer})
    figures["questions"] = rows
    figures["right"] = {"full": sum(r["full_right"] for r in rows),
                        "compacted": sum(r["compacted_right"] for r in rows),
                        "of": len(rows)}
    with client.responses.stream(
            model=args.model, temperature=0, max_output_tokens=40,
            input=[*history, {"role": "user", "content": QUESTIONS[0][0]}],
            context_management=[{"type": "compaction", "compact_threshold": 200}]) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    final = events[-1].response  # type: ignore[union-attr]  # completed or incomplete
    figures["context_management"] = {
        "events": [kind for kind in kinds if "compaction" in kind or kind.endswith(".added")],
        "status": final.status, "output": [item.type for item in final.output],
        "answer": final.output_text,
        "usage": final.usage.model_dump() if final.usage else None}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

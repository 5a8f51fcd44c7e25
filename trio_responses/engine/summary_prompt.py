"""The words of a compaction (runtime/compaction.py): how the model is asked for a
summary of the conversation, and how the summary is given back to it later. They live
at the engine layer so that an engine can know a summary request and a restored summary
when it sees one (the scripted engine keeps an agent script's place across a compaction
by them)."""

from __future__ import annotations

# The model is asked for the summary by a last user message after the whole history.
SUMMARY_INSTRUCTION = (
    "Summarize the conversation so far, for yourself to continue it later without it: "
    "what the user wants, what was asked and answered, the facts, names and numbers that "
    "matter, and what is still open. Write only the summary.")
# How the summary is given back to the model, as a user message before the user messages.
SUMMARY_PREFIX = "Summary of the earlier conversation:\n"

"""The Responses API as plain data: request schema, items, the response object, the
event state machine and SSE framing. Sans-io: nothing here imports trio, quart or vllm."""

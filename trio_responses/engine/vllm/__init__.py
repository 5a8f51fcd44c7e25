"""The vLLM engine: flags (``args``), the Trio-side bridge (``bridge``), the engine thread
(``worker``), vLLM's ``LLMEngine`` adapted for it (``core``), prompt rendering and
sampling (``prompt``), and vLLM's general plugin (``plugin``).

Nothing here imports vLLM at module level, and this package imports none of its modules:
``trio_responses.engine.vllm.args.build_vllm_engine`` is the way in, called only when the
server serves vLLM (``--engine vllm``), so the server, its tests and the scripted engine
run where vLLM is not installed.
"""

// The official openai TypeScript SDK's stream helper, client.responses.stream(), against
// a server: prints one JSON line with what it saw (or the error it threw), for
// tests/clients/test_heartbeats.py to check.
//
//   BASE_URL=http://127.0.0.1:PORT/v1 MODEL=... [API_KEY=...] [PING_EVENTS=true]
//   [RATE_LIMIT_EVENTS=true]
//   node openai_ts.mjs text [INPUT]      one streamed response
//   node openai_ts.mjs tools             a function-tool loop: the model calls
//                                        get_weather, the output goes back with
//                                        previous_response_id, until a turn has no call
//   node openai_ts.mjs compact [INPUT]   client.responses.compact() of a short history,
//                                        then a stateless turn after the compaction item,
//                                        and a stream whose context_management compacts
import OpenAI from "openai";
import { countingFetch, report } from "./wire.mjs";

const [mode, input] = process.argv.slice(2);
const headers = {};
if (process.env.PING_EVENTS) headers["X-Responses-Ping-Events"] = process.env.PING_EVENTS;
if (process.env.RATE_LIMIT_EVENTS) {
  headers["X-Responses-Rate-Limit-Events"] = process.env.RATE_LIMIT_EVENTS;
}
const wire = countingFetch();
const client = new OpenAI({
  fetch: wire.fetch,
  baseURL: process.env.BASE_URL,
  apiKey: process.env.API_KEY ?? "unused",
  maxRetries: 0,
  defaultHeaders: headers,
});
const model = process.env.MODEL;
const tools = [{
  type: "function",
  name: "get_weather",
  description: "The weather in a city today.",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
  strict: true,
}];

async function streamOnce(params) {
  const stream = client.responses.stream(params);
  const types = [];
  for await (const event of stream) types.push(event.type);
  const final = await stream.finalResponse();
  const calls = final.output.filter((item) => item.type === "function_call");
  return {
    types,
    status: final.status,
    text: final.output_text,
    calls: calls.map(({ call_id, name, arguments: args }) => ({ call_id, name, arguments: args })),
    id: final.id,
  };
}

async function main() {
  if (mode === "text") {
    return await streamOnce({ model, input: input ?? "slow reply" });
  }
  if (mode === "tools") {
    const turns = [];
    let next = "[[call:get_weather]] What is the weather in Paris?";
    let previous;
    for (let turn = 0; turn < 4; turn++) {
      const result = await streamOnce({ model, input: next, tools, previous_response_id: previous });
      turns.push(result);
      if (result.calls.length === 0) break;
      next = result.calls.map((call) => ({
        type: "function_call_output",
        call_id: call.call_id,
        output: JSON.stringify({ city: JSON.parse(call.arguments).city, forecast: "sunny" }),
      }));
      previous = result.id;
    }
    return { turns };
  }
  if (mode === "compact") {
    const history = [
      { role: "user", content: "My name is Ada." },
      { role: "assistant", content: "Hello Ada." },
      { role: "user", content: input ?? "Remember the number 42." },
    ];
    const compacted = await client.responses.compact({ model, input: history });
    const after = await client.responses.create({
      model, store: false, input: [...compacted.output, { role: "user", content: "What is my name?" }],
    });
    const stream = client.responses.stream({
      model, input: history, context_management: [{ type: "compaction", compact_threshold: 1 }],
    });
    const types = [];
    for await (const event of stream) types.push(event.type);
    const final = await stream.finalResponse();
    return {
      object: compacted.object,
      output: compacted.output.map((item) => item.type),
      sealed: typeof compacted.output[0].encrypted_content,
      usage: compacted.usage.total_tokens,
      after: after.output_text,
      types,
      final: final.output.map((item) => item.type),
    };
  }
  throw new Error(`unknown mode ${mode}`);
}

await report(main, wire);

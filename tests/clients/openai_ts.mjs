// The official openai TypeScript SDK's stream helper, client.responses.stream(), against
// a server: prints one JSON line with what it saw (or the error it threw), for
// tests/clients/test_heartbeats.py to check.
//
//   BASE_URL=http://127.0.0.1:PORT/v1 MODEL=... [API_KEY=...] [PING_EVENTS=true]
//   node openai_ts.mjs text [INPUT]      one streamed response
//   node openai_ts.mjs tools             a function-tool loop: the model calls
//                                        get_weather, the output goes back with
//                                        previous_response_id, until a turn has no call
import OpenAI from "openai";
import { countingFetch, report } from "./wire.mjs";

const [mode, input] = process.argv.slice(2);
const headers = process.env.PING_EVENTS ? { "X-Responses-Ping-Events": process.env.PING_EVENTS } : {};
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
  throw new Error(`unknown mode ${mode}`);
}

await report(main, wire);

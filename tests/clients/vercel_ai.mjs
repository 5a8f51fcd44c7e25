// The Vercel AI SDK (`ai` with `@ai-sdk/open-responses`) against a server: prints one
// JSON line with what it saw (or the error it reported), for tests/clients/ to check.
// The provider's URL is the full /v1/responses path, not the API root.
//
//   BASE_URL=http://127.0.0.1:PORT/v1 MODEL=... [API_KEY=...]
//   node vercel_ai.mjs stream [PROMPT]   streamText, reading the full stream
//   node vercel_ai.mjs generate [PROMPT] generateText
//   node vercel_ai.mjs tools             streamText with a get_weather tool the SDK runs,
//                                        up to three steps
import { generateText, stepCountIs, streamText, tool } from "ai";
import { createOpenResponses } from "@ai-sdk/open-responses";
import { z } from "zod";
import { countingFetch, report } from "./wire.mjs";

const [mode, prompt] = process.argv.slice(2);
const wire = countingFetch();
const provider = createOpenResponses({
  fetch: wire.fetch,
  name: "trio",
  url: `${process.env.BASE_URL}/responses`,
  apiKey: process.env.API_KEY ?? "unused",
  headers: process.env.PING_EVENTS ? { "X-Responses-Ping-Events": process.env.PING_EVENTS } : {},
});
const model = provider(process.env.MODEL);
const tools = {
  get_weather: tool({
    description: "The weather in a city today.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => ({ city, forecast: "sunny" }),
  }),
};

async function stream(options) {
  const result = streamText({ model, maxRetries: 0, ...options });
  const parts = [];
  const errors = [];
  for await (const part of result.fullStream) {
    parts.push(part.type);
    if (part.type === "error") errors.push(String(part.error?.message ?? part.error));
  }
  const steps = await result.steps;
  return {
    parts,
    errors,
    text: await result.text,
    finishReason: await result.finishReason,
    steps: steps.map((step) => ({
      finishReason: step.finishReason,
      text: step.text,
      toolCalls: step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
      toolResults: step.toolResults.map((r) => r.output),
    })),
  };
}

async function main() {
  if (mode === "stream") return await stream({ prompt: prompt ?? "slow reply" });
  if (mode === "generate") {
    const result = await generateText({ model, maxRetries: 0, prompt: prompt ?? "slow reply" });
    return { text: result.text, finishReason: result.finishReason };
  }
  if (mode === "tools") {
    return await stream({
      prompt: "[[call:get_weather]] What is the weather in Paris?",
      tools,
      stopWhen: stepCountIs(3),
    });
  }
  throw new Error(`unknown mode ${mode}`);
}

await report(main, wire);

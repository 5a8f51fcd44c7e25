// A fetch that lets the client read every response as usual while it counts, in a copy
// of the bytes, the heartbeats that went by: SSE comment pings (": ping") and
// response.ping events. The drivers report the counts, so a test knows its client
// really read through heartbeats.
export function countingFetch() {
  const reads = [];
  const counts = { comments: 0, events: 0 };
  async function wrapped(input, init) {
    const response = await fetch(input, init);
    if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      reads.push(response.clone().text().then((text) => {
        counts.comments += text.split("\n").filter((line) => line === ": ping").length;
        counts.events += text.split("\n").filter((line) => line === "event: response.ping").length;
      }, () => {}));
    }
    return response;
  }
  async function heartbeats() {
    await Promise.all(reads);
    return counts;
  }
  return { fetch: wrapped, heartbeats };
}

// Runs a driver's main() and prints its one JSON line: what it returned (or the error
// it threw), with the heartbeats counted on the wire.
export async function report(main, wire) {
  let result;
  try {
    result = await main();
  } catch (error) {
    result = { error: String(error?.message ?? error) };
  }
  process.stdout.write(JSON.stringify({ ...result, heartbeats: await wire.heartbeats() }) + "\n");
}

// Node's own fetch and WebSocket (undici: no proxy variables, so only capture can steer them)
// through Sluice. Usage: node --experimental-websocket stream.js <origin> <events path> <ws path>
// Prints one JSON line: the plain fetch result, per-event SSE delays, and WebSocket echoes.
const [origin, eventsPath, wsPath] = process.argv.slice(2);

async function plainFetch() {
  const res = await fetch(`${origin}/node-fetch`, { method: "POST", body: "from node" });
  return { status: res.status, body: await res.text() };
}

// Reads the SSE stream chunk by chunk; for each event, microseconds from send to arrival.
async function sse() {
  const res = await fetch(`${origin}${eventsPath}`, { headers: { accept: "text/event-stream" } });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const delays = [];
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const nowUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
    pending += decoder.decode(value, { stream: true });
    let end;
    while ((end = pending.indexOf("\n\n")) >= 0) {
      const event = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const data = event.split("\n").find((l) => l.startsWith("data: "));
      const { seq, sent_us } = JSON.parse(data.slice(6));
      delays.push([seq, nowUs - sent_us]);
    }
  }
  return { status: res.status, contentType: res.headers.get("content-type"), delays };
}

// Sends text and binary messages and collects the echoes, in order.
function websocket() {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${origin.replace("https", "wss")}${wsPath}`);
    ws.binaryType = "arraybuffer";
    const sent = ["hello 0", "hello 1", "hello 2", new Uint8Array(100000).fill(7)];
    const echoes = [];
    const timer = setTimeout(() => resolve({ error: "timed out", echoes }), 10000);
    ws.onopen = () => sent.forEach((m) => ws.send(m));
    ws.onmessage = (m) => {
      echoes.push(typeof m.data === "string" ? m.data : `binary:${m.data.byteLength}`);
      if (echoes.length === sent.length) ws.close(1000, "done");
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      resolve({ code: e.code, echoes });
    };
    ws.onerror = (e) => resolve({ error: String(e.message || e.type), echoes });
  });
}

(async () => {
  const out = {};
  for (const [name, f] of Object.entries({ fetch: plainFetch, sse, websocket })) {
    try {
      out[name] = await f();
    } catch (e) {
      out[name] = { error: `${e}: ${e.cause || ""}` };
    }
  }
  console.log(JSON.stringify(out));
})();

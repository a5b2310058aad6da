// Lifecycle events as they happen. The SSE stream if the server has one, read with fetch
// (EventSource cannot send the Authorization header); else polling GET /ojs/v1/events.
import { ApiError, api, authHeaders } from "./api.js";
import { sleep } from "./dom.js";

const STREAM = "/ojs/v1/events/stream";
const POLL_MS = 2000;
const RETRY_MS = 3000;

export class EventFeed {
  constructor(onEvent, onMode) {
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.lastId = null;
    this.stopped = false;
    this.startedAt = Date.now();
    this.wake = () => {};
  }

  async run() {
    let streaming = true;
    let cursor = null;
    while (!this.stopped) {
      try {
        if (streaming) {
          await this.stream();
          await sleep(1000); // the server ended the stream: reconnect, resuming at lastId
        } else {
          cursor = await this.poll(cursor);
        }
      } catch (error) {
        if (this.stopped) return;
        if (streaming && error instanceof ApiError && error.missingRoute) {
          streaming = false;
          continue;
        }
        this.onMode(error instanceof ApiError && error.status === 401 ? "locked" : "offline");
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, RETRY_MS);
          this.wake = () => { clearTimeout(timer); resolve(); };
        });
      }
    }
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
  }

  async stream() {
    this.abort = new AbortController();
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const response = await fetch(STREAM, { headers, signal: this.abort.signal, cache: "no-store" });
    if (!response.ok || !response.headers.get("content-type")?.startsWith("text/event-stream")) {
      throw new ApiError(response.status === 200 ? 404 : response.status,
        await response.json().catch(() => ({ error: { message: "No such endpoint" } })));
    }
    this.onMode("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  dispatch(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") this.lastId = value;
    }
    if (!data.length) return;
    try {
      const event = JSON.parse(data.join("\n"));
      if (event && typeof event === "object") this.onEvent({ type: name, ...event }, true);
    } catch { /* not JSON: not an event this page shows */ }
  }

  // Polling reads the log from its start (oldest first): events from before this page
  // was opened are skipped as history, without waiting between full pages.
  async poll(cursor) {
    const query = new URLSearchParams({ limit: "1000" });
    if (cursor) query.set("after", cursor);
    const page = await api("GET", `/ojs/v1/events?${query}`);
    this.onMode("polling");
    for (const event of page.events ?? []) {
      const fresh = new Date(event.time).getTime() >= this.startedAt - 5000;
      this.onEvent(event, fresh);
    }
    if (!page.has_more) await sleep(POLL_MS);
    return page.cursor ?? cursor;
  }
}

// The job an event is about, in the event shapes of ojs-events and ojs-realtime.
export const jobIdOf = (event) => event?.data?.job_id ?? event?.job_id ?? event?.data?.id ?? null;
export const queueOf = (event) => event?.data?.queue ?? event?.queue ?? null;

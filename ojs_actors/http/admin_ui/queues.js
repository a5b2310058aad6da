// Queues: depth by state, throughput, paused state with pause/resume; recent events.
import { api, hasAdmin, list, preferAdmin } from "./api.js";
import { badge, button, enc, h, number, table, time, toast } from "./dom.js";
import { jobIdOf, queueOf } from "./live.js";
import { Panel } from "./panel.js";

const WINDOW_MS = 60_000;

export class QueuesPanel extends Panel {
  static id = "queues";
  static title = "Queues";

  constructor(app) {
    super(app);
    this.samples = new Map(); // queue -> [[time, completed, discarded]]: throughput without the admin API
  }

  async load() {
    return preferAdmin("queues", async () => {
      const data = await api("GET", "/ojs/v1/admin/queues");
      return list(data, "queues").map((queue) => ({
        name: queue.name,
        paused: queue.paused ?? queue.state === "paused",
        counts: queue.counts ?? queue.stats ?? {},
        throughput: queue.throughput,
      }));
    }, async () => {
      const data = await api("GET", "/ojs/v1/queues?limit=1000");
      return Promise.all(list(data, "queues").map(async (queue) => {
        const stats = await api("GET", `/ojs/v1/queues/${enc(queue.name)}/stats`).catch(() => null);
        return { name: queue.name, paused: queue.paused, counts: stats?.stats ?? {} };
      }));
    });
  }

  // Jobs finished per minute, from the counts seen over the last minute.
  throughput(queue) {
    if (queue.throughput) return queue.throughput;
    const now = Date.now();
    const seen = (this.samples.get(queue.name) ?? []).filter(([at]) => now - at <= WINDOW_MS);
    seen.push([now, queue.counts.completed ?? 0, queue.counts.discarded ?? 0]);
    this.samples.set(queue.name, seen);
    const [first, last] = [seen[0], seen[seen.length - 1]];
    const minutes = (last[0] - first[0]) / 60_000;
    if (minutes < 0.03) return null;
    return {
      processed_per_minute: Math.max(0, last[1] - first[1]) / minutes,
      failed_per_minute: Math.max(0, last[2] - first[2]) / minutes,
    };
  }

  async setPaused(name, paused) {
    const action = paused ? "pause" : "resume";
    await preferAdmin("queue-actions",
      () => api("POST", `/ojs/v1/admin/queues/${enc(name)}/${action}`),
      () => api("POST", `/ojs/v1/queues/${enc(name)}/${action}`));
    toast(`Queue ${name} ${paused ? "paused" : "resumed"}.`);
    await this.refresh();
  }

  async refresh() {
    const queues = await this.load();
    const totals = { available: 0, active: 0, scheduled: 0, retryable: 0, discarded: 0, processed: 0 };
    const rows = queues.map((queue) => {
      const c = queue.counts;
      const rate = this.throughput(queue);
      for (const name of Object.keys(totals)) totals[name] += c[name] ?? 0;
      totals.processed += rate?.processed_per_minute ?? 0;
      return h("tr", { dataset: { queue: queue.name, paused: String(Boolean(queue.paused)) } },
        h("td", {}, h("a", { href: `#jobs/${enc(queue.name)}` }, queue.name)),
        h("td", {}, queue.paused ? badge("paused") : badge("active")),
        h("td", { class: "num depth" }, number(c.available ?? 0)),
        h("td", { class: "num" }, number(c.active ?? 0)),
        h("td", { class: "num" }, number(c.scheduled ?? 0)),
        h("td", { class: "num" }, number(c.retryable ?? 0)),
        h("td", { class: "num" }, number(c.completed ?? 0)),
        h("td", { class: "num" }, number(c.discarded ?? 0)),
        h("td", { class: "num" }, rate ? `${number(rate.processed_per_minute)} / ${number(rate.failed_per_minute)}` : "…"),
        h("td", { class: "actions" }, queue.paused
          ? button("Resume", () => this.setPaused(queue.name, false), { class: "primary" })
          : button("Pause", () => this.setPaused(queue.name, true))));
    });
    this.body.replaceChildren(
      h("div", { class: "cards" },
        card("Queues", queues.length),
        card("Waiting", totals.available),
        card("Active", totals.active),
        card("Scheduled + retrying", totals.scheduled + totals.retryable),
        card("Dead letter", totals.discarded, "#dead-letter"),
        card("Processed / min", totals.processed)),
      table(["Queue", "State", ...["Waiting", "Active", "Scheduled", "Retryable", "Completed",
        "Discarded", "Done / failed per min"].map((name) => [name, "num"]), ""], rows,
      "No queues yet: enqueue a job."),
      h("p", { class: "hint" }, hasAdmin("queues")
        ? "Counts and throughput from the admin API."
        : "Counts from /ojs/v1/queues/{name}/stats; throughput measured here over the last minute."),
      h("h3", {}, "Recent events"),
      this.eventList());
  }

  eventList() {
    const rows = this.app.recent.slice(0, 15).map((event) => {
      const id = jobIdOf(event);
      return h("tr", {},
        h("td", {}, time(event.time)),
        h("td", {}, h("code", {}, event.type)),
        h("td", {}, queueOf(event) ?? ""),
        h("td", {}, id ? h("a", { href: `#job/${enc(id)}` }, id) : event.subject ?? ""));
    });
    return table(["Time", "Event", "Queue", "Job"], rows, "No events since this page opened.");
  }

  onEvent() { return true; }
}

function card(label, value, href) {
  const content = [h("div", { class: "card-value" }, number(value)), h("div", { class: "card-label" }, label)];
  return href ? h("a", { class: "card", href }, content) : h("div", { class: "card" }, content);
}

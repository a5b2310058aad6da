// Workers the server has heard from, and their last heartbeat (the admin API's listing).
import { api, list, preferAdmin } from "./api.js";
import { badge, h, number, table, when } from "./dom.js";
import { Panel } from "./panel.js";

const STALE_MS = 60_000;

export class WorkersPanel extends Panel {
  static id = "workers";
  static title = "Workers";
  interval = 3000;

  async refresh() {
    const data = await preferAdmin("workers", () => api("GET", "/ojs/v1/admin/workers"), async () => null);
    if (data === null) {
      this.body.replaceChildren(h("p", { class: "hint" },
        "This server has no worker listing (GET /ojs/v1/admin/workers)."));
      return;
    }
    const workers = list(data, "workers");
    const now = Date.now();
    this.body.replaceChildren(table(["Worker", "State", "Queues", ["Active jobs", "num"], "Last heartbeat", "Host"],
      workers.map((worker) => {
        const beat = worker.last_heartbeat_at ?? worker.last_seen_at ?? worker.last_heartbeat;
        const stale = beat && now - new Date(beat).getTime() > STALE_MS;
        const state = worker.state ?? "running";
        const active = Array.isArray(worker.active_jobs) ? worker.active_jobs.length : worker.active_jobs;
        return h("tr", { class: stale ? "stale" : "" },
          h("td", {}, h("code", {}, worker.id ?? worker.worker_id)),
          h("td", {}, badge(stale && state === "running" ? "stale" : state)),
          h("td", {}, (worker.queues ?? []).join(", ")),
          h("td", { class: "num" }, number(active ?? 0)),
          h("td", {}, when(beat)),
          h("td", {}, worker.hostname ?? ""));
      }), "No worker has fetched or sent a heartbeat yet."));
  }
}

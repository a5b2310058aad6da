// The dead letter queue: jobs out of attempts, to retry or delete, one by one or selected.
import { api, list, preferAdmin } from "./api.js";
import { button, enc, h, table, time, toast } from "./dom.js";
import { Panel } from "./panel.js";

export class DeadLetterPanel extends Panel {
  static id = "dead-letter";
  static title = "Dead letter";
  interval = 3000;

  constructor(app) {
    super(app);
    this.selected = new Set();
    this.queueInput = h("input", { name: "queue", placeholder: "Queue (all)", autocomplete: "off" });
    this.tools.append(
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); this.app.kick(); } },
        this.queueInput, h("button", { type: "submit" }, "Filter")),
      button("Retry selected", () => this.bulk("retry"), { class: "primary", "data-bulk": "retry" }),
      button("Delete selected", () => this.bulk("delete"), { class: "danger", "data-bulk": "delete" }));
  }

  async load() {
    const queue = this.queueInput.value.trim();
    const query = new URLSearchParams({ limit: "100" });
    if (queue) query.set("queue", queue);
    return preferAdmin("dead-letter", async () => list(await api("GET", `/ojs/v1/admin/dead-letter?${query}`), "jobs"),
      async () => list(await api("GET", `/ojs/v1/dead-letter?${query}`), "jobs"));
  }

  retry(id) {
    return preferAdmin("dead-letter-actions", () => api("POST", `/ojs/v1/admin/dead-letter/${enc(id)}/retry`),
      () => api("POST", `/ojs/v1/dead-letter/${enc(id)}/retry`));
  }

  remove(id) {
    return preferAdmin("dead-letter-actions", () => api("DELETE", `/ojs/v1/admin/dead-letter/${enc(id)}`),
      () => api("DELETE", `/ojs/v1/dead-letter/${enc(id)}`));
  }

  async one(action, id) {
    if (action === "delete" && !confirm(`Delete job ${id} for good?`)) return;
    await (action === "retry" ? this.retry(id) : this.remove(id));
    this.selected.delete(id);
    toast(`Job ${id} ${action === "retry" ? "sent back to its queue" : "deleted"}.`);
    await this.refresh();
  }

  // One call per job: what the data-plane API offers, and each job's outcome is its own.
  async bulk(action) {
    const ids = [...this.selected];
    if (!ids.length) { toast("Select jobs first."); return; }
    if (action === "delete" && !confirm(`Delete ${ids.length} jobs for good?`)) return;
    const results = await Promise.allSettled(ids.map((id) => (action === "retry" ? this.retry(id) : this.remove(id))));
    const failed = results.filter((r) => r.status === "rejected");
    ids.forEach((id) => this.selected.delete(id));
    toast(`${action === "retry" ? "Retried" : "Deleted"} ${ids.length - failed.length} of ${ids.length} jobs`
      + (failed.length ? `; ${failed[0].reason.message}` : "."), failed.length ? "error" : "info");
    await this.refresh();
  }

  async refresh() {
    const jobs = await this.load();
    const ids = new Set(jobs.map((job) => job.id));
    for (const id of this.selected) if (!ids.has(id)) this.selected.delete(id);
    const all = h("input", { type: "checkbox", "aria-label": "Select all",
      checked: jobs.length > 0 && this.selected.size === jobs.length,
      onchange: (e) => { jobs.forEach((job) => (e.target.checked ? this.selected.add(job.id) : this.selected.delete(job.id))); this.app.kick(); } });
    const rows = jobs.map((job) => {
      const error = job.error ?? job.errors?.[job.errors.length - 1] ?? {};
      return h("tr", { dataset: { job: job.id } },
        h("td", {}, h("input", { type: "checkbox", "aria-label": `Select ${job.id}`, checked: this.selected.has(job.id),
          onchange: (e) => (e.target.checked ? this.selected.add(job.id) : this.selected.delete(job.id)) })),
        h("td", {}, h("a", { href: `#job/${enc(job.id)}` }, job.id)),
        h("td", {}, job.type), h("td", {}, job.queue),
        h("td", { class: "num" }, job.attempt ?? ""),
        h("td", { class: "error-text" }, [error.code ?? error.type, error.message].filter(Boolean).join(": ")),
        h("td", {}, time(job.discarded_at ?? job.completed_at)),
        h("td", { class: "actions" }, button("Retry", () => this.one("retry", job.id), { class: "primary" }),
          button("Delete", () => this.one("delete", job.id), { class: "danger" })));
    });
    this.body.replaceChildren(table([all, "Job", "Type", "Queue", ["Attempts", "num"], "Last error", "Discarded", ""],
      rows, "The dead letter queue is empty."));
  }
}

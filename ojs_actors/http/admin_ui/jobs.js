// Job search (the admin API's job listing, or a lookup by id) and one job's detail.
import { ApiError, api, hasAdmin, list, preferAdmin } from "./api.js";
import { badge, button, enc, h, pre, table, time, toast, when } from "./dom.js";
import { jobIdOf } from "./live.js";
import { Panel } from "./panel.js";

const STATES = ["", "scheduled", "available", "pending", "active", "completed", "retryable",
  "cancelled", "discarded"];
const TERMINAL = new Set(["completed", "cancelled", "discarded"]);
const EVENT_PAGES = 5; // a job's timeline reads at most this many pages of 1000 events

export class JobsPanel extends Panel {
  static id = "jobs";
  static title = "Jobs";
  interval = 5000;

  constructor(app) {
    super(app);
    const field = (name, placeholder) => h("input", { name, placeholder, autocomplete: "off" });
    this.idInput = field("id", "Job id");
    this.queueInput = field("queue", "Queue");
    this.typeInput = field("type", "Type (prefix*)");
    this.stateInput = h("select", { name: "state" }, STATES.map((s) => h("option", { value: s }, s || "any state")));
    this.tools.append(
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); this.open(); } },
        this.idInput, h("button", { type: "submit" }, "Open")),
      h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); this.app.kick(); } },
        this.queueInput, this.stateInput, this.typeInput, h("button", { type: "submit" }, "Search")));
  }

  show(arg) {
    super.show(arg);
    if (arg) this.queueInput.value = arg;
  }

  open() {
    const id = this.idInput.value.trim();
    if (id) location.hash = `#job/${enc(id)}`;
  }

  async refresh() {
    const query = new URLSearchParams({ per_page: "100" });
    for (const input of [this.queueInput, this.stateInput, this.typeInput]) {
      if (input.value.trim()) query.set(input.name, input.value.trim());
    }
    const jobs = await preferAdmin("jobs", async () => list(await api("GET", `/ojs/v1/admin/jobs?${query}`), "jobs"),
      async () => null);
    if (jobs === null) {
      this.body.replaceChildren(h("p", { class: "hint" },
        "This server has no job listing (GET /ojs/v1/admin/jobs): open a job by its id, ",
        "or find it through the queues, the dead letter or the recent events."));
      return;
    }
    this.body.replaceChildren(table(["Job", "Type", "Queue", "State", ["Attempt", "num"], "Created"],
      jobs.map((job) => h("tr", {},
        h("td", {}, h("a", { href: `#job/${enc(job.id)}` }, job.id)),
        h("td", {}, job.type), h("td", {}, job.queue), h("td", {}, badge(job.state)),
        h("td", { class: "num" }, job.attempt ?? ""), h("td", {}, time(job.created_at)))),
      "No job matches."));
  }
}

export class JobPanel extends Panel {
  static id = "job";
  static title = "Job";

  show(arg) {
    if (arg !== this.arg) {
      this.job = null;
      this.history = null;
      this.version = null;
      this.body.replaceChildren(h("p", { class: "hint" }, "Loading…"));
    }
    super.show(arg);
  }

  async load(id) {
    return preferAdmin("job-detail", async () => {
      const data = await api("GET", `/ojs/v1/admin/jobs/${enc(id)}`);
      return data.job ?? data;
    }, async () => (await api("GET", `/ojs/v1/jobs/${enc(id)}`)).job);
  }

  async refresh() {
    if (!this.arg) return;
    if (this.job && TERMINAL.has(this.job.state) && !this.stale) return; // nothing more will happen
    this.stale = false;
    try {
      this.job = await this.load(this.arg);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.body.replaceChildren(h("p", { class: "hint" }, `No job ${this.arg}.`));
        return;
      }
      throw error;
    }
    const version = `${this.job.state}/${this.job.attempt}`;
    if (version !== this.version) { // the job moved: its events are read again
      this.history = await this.readHistory(this.job).catch(() => this.history ?? []);
      this.version = version;
    }
    this.render();
  }

  // The job's events in the log: read by its queue and type, kept if about this job.
  async readHistory(job) {
    const found = [];
    let after = null;
    for (let page = 0; page < EVENT_PAGES; page += 1) {
      const query = new URLSearchParams({ limit: "1000", queues: job.queue, job_types: job.type });
      if (after) query.set("after", after);
      const data = await api("GET", `/ojs/v1/events?${query}`);
      found.push(...(data.events ?? []).filter((event) => jobIdOf(event) === job.id));
      if (!data.has_more) break;
      after = data.cursor;
    }
    return found;
  }

  onEvent(event) {
    if (jobIdOf(event) !== this.arg) return false;
    this.stale = true; // a retried or deleted job moves on from a terminal state too
    return true;
  }

  // The job's events from the log; its own timestamps when the log has none.
  timeline(job) {
    const entries = [];
    const add = (at, label, detail, kind = "") => at && entries.push({ at, label, detail, kind });
    const events = this.history ?? [];
    for (const event of events) {
      const kind = /completed$/.test(event.type) ? "ok" : /(failed|discarded|cancelled)$/.test(event.type) ? "error" : "event";
      add(event.time, event.type, event.data?.error?.message ?? "", kind);
    }
    if (!events.length) {
      add(job.created_at, "created", `in ${job.queue}`);
      add(job.enqueued_at, "enqueued");
      add(job.started_at, "started", `attempt ${job.attempt}`);
      if (job.state === "completed") add(job.completed_at, "completed", "", "ok");
      add(job.cancelled_at, "cancelled");
      add(job.discarded_at, "discarded", "", "error");
    }
    if (job.state === "scheduled" || job.state === "retryable") add(job.scheduled_at, "due", "", "");
    for (const error of job.errors ?? []) {
      add(error.occurred_at ?? error.timestamp ?? error.at, `attempt ${error.attempt ?? "?"} failed`,
        [error.code ?? error.type, error.message].filter(Boolean).join(": "), "error");
    }
    const seen = new Set();
    return entries
      .filter(({ at, label }) => !seen.has(`${at}|${label}`) && seen.add(`${at}|${label}`))
      .sort((a, b) => new Date(a.at) - new Date(b.at));
  }

  async act(label, call) {
    await call();
    toast(`Job ${this.arg}: ${label}.`);
    this.stale = true;
    await this.refresh();
  }

  render() {
    const job = this.job;
    const id = enc(job.id);
    const actions = [];
    if (!TERMINAL.has(job.state)) {
      actions.push(button("Cancel", () => this.act("cancelled", () => preferAdmin("job-actions",
        () => api("POST", `/ojs/v1/admin/jobs/${id}/cancel`), () => api("DELETE", `/ojs/v1/jobs/${id}`)))));
    }
    if (job.state === "discarded") {
      actions.push(button("Retry", () => this.act("retried", () => preferAdmin("job-actions",
        () => api("POST", `/ojs/v1/admin/jobs/${id}/retry`), () => api("POST", `/ojs/v1/dead-letter/${id}/retry`))),
      { class: "primary" }));
    }
    if (job.state === "pending") {
      actions.push(button("Activate", () => this.act("activated", () => api("POST", `/ojs/v1/jobs/${id}/activate`))));
    }
    const facts = [["Type", job.type], ["Queue", h("a", { href: `#jobs/${enc(job.queue)}` }, job.queue)],
      ["Attempt", `${job.attempt ?? 0} of ${job.max_attempts ?? "?"}`], ["Priority", job.priority],
      ["Worker", job.worker_id ?? "—"], ["Created", when(job.created_at)]];
    const workflow = job.meta?.workflow_id ?? job.workflow_id;
    if (workflow) facts.push(["Workflow", h("a", { href: `#workflows/${enc(workflow)}` }, workflow)]);
    const errors = job.errors ?? (job.error ? [job.error] : []);
    this.body.replaceChildren(
      h("div", { class: "job-head" }, h("code", { class: "job-id" }, job.id),
        h("span", { class: "job-state", dataset: { state: job.state } }, badge(job.state)), ...actions),
      h("dl", { class: "facts" }, facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
      h("div", { class: "columns" },
        h("div", {}, h("h3", {}, "Args"), pre(job.args),
          h("h3", {}, "Result"), pre(job.result),
          h("h3", {}, "Errors"), table([["Attempt", "num"], "Error", "Message", "When"], errors.map((error) => h("tr", {},
            h("td", { class: "num" }, error.attempt ?? ""), h("td", {}, error.code ?? error.type ?? ""),
            h("td", {}, error.message ?? ""), h("td", {}, time(error.occurred_at ?? error.at)))), "No errors.")),
        h("div", {}, h("h3", {}, "Timeline"), h("ol", { class: "timeline" }, this.timeline(job).map((entry) =>
          h("li", { class: entry.kind }, h("time", { datetime: entry.at }, time(entry.at, true)),
            h("strong", {}, entry.label), entry.detail ? h("span", {}, entry.detail) : null))))),
      h("details", {}, h("summary", {}, "Raw job"), pre(job)),
      h("p", { class: "hint" }, hasAdmin("job-detail") ? "Detail from GET /ojs/v1/admin/jobs/{id}."
        : "Detail from GET /ojs/v1/jobs/{id}."));
  }
}

// Cron entries: schedule, next and last fire times, enable/disable.
import { api, list } from "./api.js";
import { badge, button, enc, h, number, table, toast, when } from "./dom.js";
import { Panel } from "./panel.js";

export class CronPanel extends Panel {
  static id = "cron";
  static title = "Cron";
  interval = 5000;

  async setEnabled(name, enabled) {
    await api("PATCH", `/ojs/v1/cron/${enc(name)}`, { enabled });
    toast(`Cron ${name} ${enabled ? "enabled" : "disabled"}.`);
    await this.refresh();
  }

  async refresh() {
    const crons = list(await api("GET", "/ojs/v1/cron?limit=1000"), "crons");
    this.body.replaceChildren(table(["Name", "Schedule", "Job", "State", "Next fire", "Last fire", ["Runs", "num"], ""],
      crons.map((cron) => h("tr", { dataset: { cron: cron.name } },
        h("td", {}, cron.name, cron.description ? h("div", { class: "hint" }, cron.description) : null),
        h("td", {}, h("code", {}, cron.expression), h("div", { class: "hint" }, cron.timezone)),
        h("td", {}, cron.job_template?.type ?? "", h("div", { class: "hint" }, cron.job_template?.options?.queue ?? "")),
        h("td", {}, cron.enabled ? badge("enabled") : badge("disabled")),
        h("td", {}, cron.enabled ? when(cron.next_run_at) : "—"),
        h("td", {}, cron.last_job_id ? h("a", { href: `#job/${enc(cron.last_job_id)}` }, when(cron.last_run_at)) : when(cron.last_run_at)),
        h("td", { class: "num" }, number(cron.run_count)),
        h("td", { class: "actions" }, cron.enabled
          ? button("Disable", () => this.setEnabled(cron.name, false))
          : button("Enable", () => this.setEnabled(cron.name, true), { class: "primary" })))),
      "No cron entries (POST /ojs/v1/cron registers one)."));
  }
}
